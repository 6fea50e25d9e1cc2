"""Whether a notebook's JupyterLab answers yet, and waiting until it does.

``answers(target)`` asks ``GET http://<address>/nb/<replica id>/api/status`` with the run's
token in the ``Authorization`` header (never in the URL, never logged) and a short timeout
(``TIMEOUT``): 200 is ready. A replica that answered once is remembered in this process (by
replica, address and token), so pages that refresh do not ask it again.

``mark(views)`` sets ``NotebookView.answering`` (all their running replicas asked at once);
``watch(notebook, wait)`` looks again every ``POLL_SECONDS`` for up to ``wait`` seconds and
answers as soon as every subtask's JupyterLab answers (or the run ends, or, with ``since``,
its step is no longer the one the caller shows): "reachable the moment it answers", for the
JSON API's long poll and the notebook page's. While only JupyterLab is awaited it asks
JupyterLab every time and reads the database every ``REREAD_SECONDS``.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from portal import notebook_progress, notebook_views
from portal.proxy import access, forward

TIMEOUT = 0.5  # seconds, to connect and to read /api/status
POLL_SECONDS = 0.05
REREAD_SECONDS = 0.5  # while waiting for JupyterLab, the run's rows are read this often
MAX_REMEMBERED = 4096
MAX_PARALLEL = 8

_answered = set()  # digests of (replica, address, token) that answered once
_lock = threading.Lock()
_http = None


def _session():
    global _http
    with _lock:
        if _http is None:
            _http = forward.http_session(pool_size=MAX_PARALLEL)
        return _http


def _key(target):
    return access.digest(f"{target.replica_id}|{target.address}|{target.secret}")


def answers(target, timeout=TIMEOUT):
    """Whether JupyterLab of ``target`` (an ``access.Target``) answers ``/api/status``."""
    key = _key(target)
    if key in _answered:
        return True
    url = f"http://{target.address}/nb/{target.replica_id}/api/status"
    try:
        with _session().get(url, headers={"Authorization": f"token {target.secret}"},
                            timeout=(timeout, timeout), allow_redirects=False) as response:
            ok = response.status_code == 200
    except requests.RequestException:
        return False
    if ok:
        with _lock:
            if len(_answered) >= MAX_REMEMBERED:
                _answered.clear()
            _answered.add(key)
    return ok


def targets(view):
    """The ``access.Target`` of each running replica of ``view``'s latest run that has an
    address (the caller checked the owner)."""
    run = view.run
    if run is None or run.ended or run.task.deleted or not run.task.secret:
        return []
    rows = {item.replica.id: item.replica for item in run.replicas}
    return [access.Target(replica_id=rid, address=rows[rid].address, secret=run.task.secret)
            for _role, rid in notebook_progress.running_replicas(view)]


def mark(views):
    """Set ``answering`` of each ``NotebookView`` in ``views``: the ids of its replicas whose
    JupyterLab answers. Those not known to answer are asked at once, side by side."""
    found = [(view, target) for view in views for target in targets(view)]
    unknown = [target for _view, target in found if _key(target) not in _answered]
    if len(unknown) > 1:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(unknown))) as pool:
            list(pool.map(answers, unknown))
    elif unknown:
        answers(unknown[0])
    for view in views:
        view.answering = frozenset(target.replica_id for seen, target in found
                                   if seen is view and _key(target) in _answered)
    return views


def _read(notebook, events):
    view = mark([notebook_views.notebook_view(notebook, events=events)])[0]
    return view, notebook_progress.progress(view, view.answering)


def _settled(progress, since):
    return (progress is None or progress.ready
            or (since is not None and (progress.step, progress.answering) != since))


def watch(notebook, wait=0.0, since=None, events=False):
    """``(view, progress)`` of ``notebook`` (``portal.notebook_views``), its ``answering`` set.
    With ``wait`` (seconds), it looks again every ``POLL_SECONDS`` (see the module) until
    JupyterLab answers on every subtask, the run is no longer starting or running, ``wait``
    is over, or, with ``since`` (the ``(step, answering)`` the caller shows), they differ
    from it.
    ``events``: the answer's view has the replicas' transitions."""
    deadline = time.monotonic() + max(0.0, wait)
    with_events = events and wait <= 0
    view, progress = _read(notebook, with_events)
    read_at = time.monotonic()
    while not _settled(progress, since) and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if progress is not None and progress.step == notebook_progress.JUPYTER \
                and time.monotonic() - read_at < REREAD_SECONDS:
            # Only JupyterLab's answer changes this step: ask it, not the database.
            progress = notebook_progress.progress(view, mark([view])[0].answering)
        else:
            view, progress = _read(notebook, False)
            read_at = time.monotonic()
    if events and not with_events:
        view, progress = _read(notebook, True)
    return view, progress
