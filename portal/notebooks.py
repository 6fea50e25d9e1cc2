"""Notebooks: the rules the renter's notebook pages and the JSON API share.

A ``Notebook`` is what a renter keeps: a name, an image with ``jupyter-lab``, a spec, a
pool, a number of subtasks (1-8), an algorithm folder (mounted at /code, the notebook's
working directory; none: the notebook's own folder) and a dataset folder (read-only at
/dataset). Each start is a new run: a ``Task`` of kind "notebook" with subtasks ``lab-0``
... of one replica each, placed, started, followed and billed like any task. The
scheduler starts JupyterLab with its own arguments and the run's ``Task.secret`` as the
Jupyter token; that token is never shown, put in a URL or logged, and is not in
``Task.env``. Files live in the host folder, so stopping and starting again shows the same
files. Starting a run hides the notebook's earlier, ended runs (``Task.deleted``, which
also has the scheduler remove their containers); their rows stay for billing.

Checks are those of training tasks (``portal.tasks``): name, image, pool open to the
renter, a usable spec that fits the pool, and a balance covering the miner's minimum
period of the run. Bad input raises ``NotebookError`` (a ``TaskError``) naming every
field at once; nothing is saved then.
"""

import json
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import abort, current_app, has_app_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import IntegrityError

from portal import ledger, storage, values
from portal import tasks as rules
from portal.access import open_pools
from portal.db import database
from portal.models import (
    REPLICA_ENDED,
    Notebook,
    PoolLimit,
    Replica,
    ReplicaEvent,
    Subtask,
    Task,
    utcnow,
)
from portal.pools import default_pool, pool_views
from portal.signals import tasks_changed
from portal.specs import spec_views

MAX_COUNT = 8
ROLE = "lab"  # subtask i is lab-i
PLACEHOLDER_ARGV = ["jupyter-lab"]  # the scheduler decides the real arguments
NO_FOLDER = ""


class NotebookError(rules.TaskError):
    """Bad input or a refused action; ``errors`` maps a field (``name``, ``spec``,
    ``count``, ``algorithm``, ``dataset``...; ``None``: the notebook) to its message."""


# --- folders -----------------------------------------------------------------------------


def data_root():
    """The data folder of this app (``HOURGLASS_DATA``)."""
    return current_app.config["DATA_ROOT"]


def code_folder(root, notebook):
    """The host folder that is /code in ``notebook``: its algorithm's, else its own."""
    if notebook.algorithm:
        return storage.user_folder(root, notebook.user_id, "algorithms", notebook.algorithm)
    return storage.user_folder(root, notebook.user_id, "notebooks", str(notebook.id))


def mounts(root, notebook):
    """``[(host path, container path, read only)]`` of ``notebook``'s containers: /code,
    and /dataset read-only when it has one."""
    found = [(str(code_folder(root, notebook)), "/code", False)]
    if notebook.dataset:
        found.append((str(storage.user_folder(root, notebook.user_id, "datasets",
                                              notebook.dataset)), "/dataset", True))
    return found


def folder_names(root, user, kind):
    """The names of ``user``'s folders of ``kind`` that exist, sorted (for the form)."""
    parent = storage.user_folder(root, user.id, kind, "x").parent
    try:
        return sorted(p.name for p in parent.iterdir()
                      if storage.valid_name(p.name) and storage.is_folder(p))
    except OSError:
        return []


def _make_code_folder(notebook):
    try:
        storage.ensure_folder(code_folder(data_root(), notebook))
    except OSError:
        current_app.logger.exception("cannot make the /code folder of notebook %s",
                                     notebook.id)
        raise NotebookError({None: _("The notebook's folder could not be made on the server; "
                                     "tell the owner of this cloud.")}) from None


# --- checking what was typed -------------------------------------------------------------


def _count(value):
    return values.checked(NotebookError, "count", values.whole_number, value, 1, MAX_COUNT,
                          message=_("Subtasks: a whole number from 1 to %(n)d.", n=MAX_COUNT))


def _algorithm(value):
    name = value.strip() if isinstance(value, str) else value
    if name in (None, ""):
        return NO_FOLDER
    if not storage.valid_name(name):
        raise NotebookError({"algorithm": _(
            "An algorithm is a folder name: 1-64 letters, digits, '.', '_' and '-', starting "
            "with a letter or digit.")})
    return name


def _dataset(user, value):
    name = value.strip() if isinstance(value, str) else value
    if name in (None, ""):
        return NO_FOLDER
    if not storage.valid_name(name) or not storage.is_folder(
            storage.user_folder(data_root(), user.id, "datasets", name)):
        raise NotebookError({"dataset": _("You have no dataset '%(name)s'.",
                                          name=str(name)[:64])})
    return name


def _spec(spec_name, pool, pools, specs):
    """The ``SpecView`` of ``spec_name`` (usable by the renter, fitting ``pool``)."""
    try:
        return rules._subtasks([(f"{ROLE}-0", spec_name, 1)], pool, pools, specs)[0][1]
    except rules.TaskError as exc:
        raise NotebookError({"spec": next(iter(exc.errors.values()))}) from None


def _refusal(user, spec, count):
    return ledger.start_refusal(user, ledger.minimum_for(spec.spec.price_per_hour * count))


# --- what a renter does ------------------------------------------------------------------


def create_notebook(user, name, image, spec, pool, count=1, algorithm="", dataset="",
                    start=True):
    """Check everything, then save the notebook, make its /code folder (owned by the
    container's user) and, with ``start``, start its first run; one transaction. ``spec``
    and ``pool`` are names, ``algorithm`` and ``dataset`` folder names or "". Raises
    NotebookError with the message of every bad field; nothing is saved then."""
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    errors, checked = {}, {}
    checks = {"name": lambda: rules._name(name), "image": lambda: rules._image(image),
              "pool": lambda: rules._pool(pools, pool), "count": lambda: _count(count),
              "algorithm": lambda: _algorithm(algorithm),
              "dataset": lambda: _dataset(user, dataset)}
    for key, check in checks.items():
        try:
            checked[key] = check()
        except rules.TaskError as exc:
            errors.update(exc.errors)
    try:
        checked["spec"] = _spec(spec, checked.get("pool"), pools, specs)
    except NotebookError as exc:
        errors.update(exc.errors)
    if errors:
        raise NotebookError(errors)
    if start and (refusal := _refusal(user, checked["spec"], checked["count"])):
        raise NotebookError({None: refusal})
    try:
        with database.atomic():
            notebook = Notebook.create(
                user=user, name=checked["name"], image=checked["image"],
                spec=checked["spec"].spec, pool=checked["pool"].pool, count=checked["count"],
                algorithm=checked["algorithm"], dataset=checked["dataset"])
            _make_code_folder(notebook)
            run = _write_run(notebook, checked["spec"].spec, checked["pool"].pool) if start \
                else None
    except IntegrityError:  # the spec or pool was deleted since it was checked
        raise NotebookError({None: _("The spec or pool no longer exists: reload the page.")}
                            ) from None
    if run is not None:
        rules._wake(run)
    return notebook


def start_notebook(notebook):
    """Start a new run of ``notebook`` with its settings, checked again (a spec disabled or
    a pool closed since is refused, so is a balance short of the minimum period); returns
    the run (``Task``). Refused while a run has not ended."""
    if notebook.deleted:
        raise NotebookError({None: _("This notebook was deleted.")})
    user = notebook.user
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    pool_row = notebook.pool if notebook.pool_id else default_pool()
    spec_row = notebook.spec if notebook.spec_id else None
    try:
        pool = rules._pool(pools, pool_row.name)
    except rules.TaskError:
        raise NotebookError({None: _("The pool '%(name)s' is no longer open to you.",
                                     name=pool_row.name)}) from None
    if spec_row is None:
        raise NotebookError({None: _("The spec of this notebook was deleted.")})
    spec = _spec(spec_row.name, pool, pools, specs)
    try:
        _dataset(user, notebook.dataset)
    except NotebookError:
        raise NotebookError({None: _("The dataset '%(name)s' no longer exists.",
                                     name=notebook.dataset)}) from None
    if refusal := _refusal(user, spec, notebook.count):
        raise NotebookError({None: refusal})
    with database.atomic():
        # Writing the notebook's row first locks it (PostgreSQL; SQLite's transactions
        # take the database), so two starts at once cannot both find no active run.
        Notebook.update(count=Notebook.count).where(Notebook.id == notebook.id).execute()
        if active_run(notebook) is not None:
            raise NotebookError({None: _("This notebook is running already.")})
        Task.update(deleted=True).where(Task.notebook == notebook.id).execute()
        _make_code_folder(notebook)
        run = _write_run(notebook, spec.spec, pool.pool)
    rules._wake(run)
    return run


def _write_run(notebook, spec, pool):
    """A pending run of ``notebook``: the task, ``count`` subtasks of one replica, their
    "submitted" events. Call inside a transaction."""
    run = Task.create(user=notebook.user_id, kind="notebook", notebook=notebook,
                      secret=secrets.token_urlsafe(32), name=notebook.name,
                      image=notebook.image, argv=json.dumps(PLACEHOLDER_ARGV), env="{}",
                      pool=pool, state="pending")
    now = utcnow()
    for index in range(notebook.count):
        subtask = Subtask.insert(task=run, role=f"{ROLE}-{index}", spec=spec,
                                 replicas=1).execute()
        Replica.insert(task=run, subtask=subtask, index=0, state="pending",
                       created_at=now).execute()
    ids = [rid for (rid,) in Replica.select(Replica.id).where(Replica.task == run).tuples()]
    ReplicaEvent.insert_many([{"replica": rid, "at": now, "state": "pending",
                               "reason": rules.SUBMITTED} for rid in ids]).execute()
    return run


def active_run(notebook):
    """The run of ``notebook`` that has a replica not ended yet, or None."""
    return (Task.select().join(Replica)
            .where(Task.notebook == notebook.id, Replica.state.not_in(REPLICA_ENDED))
            .order_by(Task.id.desc()).first())


def stop_notebook(notebook):
    """Stop the running notebook (its files stay); refused when nothing runs."""
    run = active_run(notebook)
    if run is None:
        raise NotebookError({None: _("This notebook is not running.")})
    try:
        rules.request_stop(run)
    except rules.TaskError:  # it ended meanwhile
        raise NotebookError({None: _("This notebook is not running.")}) from None
    return run


def delete_notebook(notebook):
    """Hide a notebook that does not run, with its runs. Rows and their machine-time stay
    (billing refers to them), and so do the files; the scheduler removes the containers."""
    with database.atomic():
        if active_run(notebook) is not None:
            raise NotebookError({None: _("Stop the notebook and wait for it to end before "
                                         "deleting it.")})
        Notebook.update(deleted=True).where(Notebook.id == notebook.id).execute()
        Task.update(deleted=True).where(Task.notebook == notebook.id).execute()
        notebook.deleted = True
    if has_app_context():  # the scheduler removes the containers now
        tasks_changed.send(current_app._get_current_object(), notebook_id=notebook.id)


def get_notebook_or_404(user, notebook_id):
    """``user``'s notebook ``notebook_id``; another renter's, a deleted one or none at all
    is the same 404."""
    found = None
    if isinstance(notebook_id, int) and 0 < notebook_id < 2**63:
        found = Notebook.get_or_none(Notebook.id == notebook_id, Notebook.user == user,
                                     Notebook.deleted == False)  # noqa: E712
    if found is None:
        abort(404)
    return found


# --- what a renter sees ------------------------------------------------------------------


@dataclass
class NotebookView:
    """A notebook and its latest run (``portal.tasks.TaskView``, or None before the first
    start), and which of Start, Stop and Delete apply."""

    notebook: Notebook
    run: rules.TaskView | None = None
    answering: frozenset | None = None  # replica ids whose JupyterLab answered; None: not asked

    @property
    def state(self):
        """The latest run's state; None when it never ran."""
        return self.run.state if self.run else None

    @property
    def running(self):
        return self.run is not None and not self.run.ended

    @property
    def stopping(self):
        return self.run is not None and self.run.stopping

    @property
    def can_start(self):
        return not self.running

    @property
    def can_stop(self):
        return self.run is not None and self.run.can_stop

    @property
    def can_delete(self):
        return not self.running

    @property
    def cost(self):
        """Micro-units the latest run has been charged so far."""
        return sum(item.replica.charged for item in self.run.replicas) if self.run else 0

    @property
    def culling(self):
        """``IdleCulling`` of the running run when its pool stops idle notebooks, else None."""
        if not self.running or self.stopping:
            return None
        return idle_culling(self.run.task, [item.replica for item in self.run.replicas])


@dataclass(frozen=True)
class IdleCulling:
    """A pool's idle culling as a run sees it: after ``minutes`` idle it stops, in about
    ``minutes_left`` (rounded up) counted from the last activity the scheduler saw."""

    minutes: int
    minutes_left: int


def idle_culling(run, replicas, now=None):
    """The ``IdleCulling`` of ``run`` (a notebook ``Task``) with ``replicas`` (its rows), or
    None when its pool does not stop idle notebooks. Before any activity was seen, the whole
    idle time is left."""
    minutes = (PoolLimit.select(PoolLimit.cull_idle_minutes)
               .where(PoolLimit.pool == run.pool_id).scalar())
    if not minutes or minutes <= 0:
        return None
    seen = [r.last_activity_at for r in replicas
            if r.state == "running" and r.last_activity_at is not None]
    if not seen:
        return IdleCulling(minutes, minutes)
    left = max(seen) + timedelta(minutes=minutes) - (now or utcnow())
    return IdleCulling(minutes, max(0, math.ceil(left.total_seconds() / 60)))


def _latest_runs(notebooks, events):
    ids = [notebook.id for notebook in notebooks]
    latest = {}
    for run in Task.select().where(Task.notebook.in_(ids)).order_by(Task.id):
        latest[run.notebook_id] = run
    views = rules._views(list(latest.values()), events=events) if latest else []
    return {view.task.notebook_id: view for view in views}


def notebook_views(user):
    """``user``'s notebooks that are not deleted, newest first, each with its latest run."""
    notebooks = list(Notebook.select().where(Notebook.user == user,
                                             Notebook.deleted == False)  # noqa: E712
                     .order_by(Notebook.created_at.desc(), Notebook.id.desc()))
    runs = _latest_runs(notebooks, events=False)
    return [NotebookView(notebook, runs.get(notebook.id)) for notebook in notebooks]


def notebook_view(notebook, events=True):
    """One notebook with its latest run, transitions included unless ``events`` is false."""
    return NotebookView(notebook, _latest_runs([notebook], events=events).get(notebook.id))


# --- starting: the steps of a run until JupyterLab answers -------------------------------

PLACE, CONTAINER, JUPYTER, READY = 1, 2, 3, 4
STEPS = (_l("Waiting for a place"), _l("Starting the container"),
         _l("Waiting for JupyterLab"), _l("Ready"))


def running_replicas(view):
    """``[(role, replica id)]`` of the latest run's replicas that run and have an address
    (where JupyterLab answers, once it does), by subtask."""
    if view.run is None or view.run.ended:
        return []
    return [(sub.subtask.role, item.replica.id) for sub in view.run.subtasks
            for item in sub.replicas
            if item.replica.state == "running" and item.replica.address]


@dataclass(frozen=True)
class Progress:
    """Where a run is on its way to JupyterLab: ``step`` (``PLACE`` 1 .. ``READY`` 4, named
    by ``STEPS``), that step in words (``text``), and how many of its ``replicas`` (those not
    ended) have a JupyterLab that answers (``answering``)."""

    step: int
    text: str
    answering: int
    replicas: int

    @property
    def ready(self):
        return self.step == READY

    @property
    def steps(self):
        """``[(number, label)]`` of every step, for the indicator."""
        return [(number, str(label)) for number, label in enumerate(STEPS, 1)]


def _step(replica, ready_ids):
    if replica.state == "pending":
        return PLACE
    if replica.state == "starting":
        return CONTAINER
    return READY if replica.id in ready_ids else JUPYTER


def progress(view, ready_ids=()):
    """The ``Progress`` of ``view``'s latest run, given ``ready_ids`` (the replicas whose
    JupyterLab answered); None when no run is starting or running, or it is stopping. With
    several subtasks the run is at the step of its slowest replica."""
    run = view.run
    if run is None or run.ended or run.stopping:
        return None
    live = [item.replica for item in run.replicas if item.replica.state not in REPLICA_ENDED]
    if not live:
        return None
    steps = [_step(replica, ready_ids) for replica in live]
    step = min(steps)
    if step == PLACE:
        reason = run.task.reason
        text = (_("Waiting for a place: %(reason)s", reason=rules.reason_text(reason))
                if reason else _("Waiting for the scheduler to place it."))
    elif step == CONTAINER:
        nodes = sorted({replica.node.name for replica, at in zip(live, steps, strict=True)
                        if at == CONTAINER and replica.node_id})
        text = (_("Starting the container on node %(node)s", node=", ".join(nodes)) if nodes
                else _("Starting the container"))
    elif step == JUPYTER:
        text = _("Waiting for JupyterLab to answer")
    else:
        text = _("Ready: JupyterLab answers")
    return Progress(step=step, text=text, answering=steps.count(READY), replicas=len(live))
