"""Idle culling of notebooks: the leader's pass stops a notebook run left idle too long.

A pool's ``PoolLimit.cull_idle_minutes`` (None or 0: off) is its idle time T. For each
running notebook replica in such a pool, its JupyterLab is asked (with the run's token, in
the reconciler's threads) for its ``/api/status`` (``last_activity``: the latest of
HTTP, kernel and terminal activity) and its ``/api/kernels`` (each kernel's
``execution_state``; asked with ``no_track_activity`` so the question is no activity
itself). A busy kernel is activity now, browser open or not. The activity seen is stored
in ``Replica.last_activity_at`` (the notebook page counts down from it). A run is stopped
with ``CULLED`` when every one of its running replicas answered and none had activity
within T. A JupyterLab that does not answer, or answers something unexpected, counts as
busy: nothing is culled on missing data. The token is never logged.
"""

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from portal.models import PoolLimit, Replica, Task
from portal.reasons import CULLED
from portal.task_input import TaskError
from portal.tasks import request_stop

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
TIMEOUT = 2  # seconds, each request to a JupyterLab


@dataclass(frozen=True)
class Activity:
    """What a JupyterLab said: its last activity (naive UTC) and whether a kernel is busy."""

    last_activity: datetime
    busy: bool


def _get(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (http only)
        return json.loads(response.read())


def _moment(text):
    """An ISO time from Jupyter ("...Z") as a naive UTC datetime."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def activity(address, replica_id, token):
    """Ask the JupyterLab of replica ``replica_id`` at ``address`` ("IP:port"); an
    ``Activity``, or None when it did not answer as expected."""
    base = f"http://{address}/nb/{replica_id}/api"
    try:
        status = _get(f"{base}/status", token)
        kernels = _get(f"{base}/kernels?no_track_activity=1", token)
        if not isinstance(kernels, list):
            return None
        last = _moment(status["last_activity"])
        busy = any(kernel.get("execution_state") == "busy" for kernel in kernels)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        # the URL has no token; the error's text cannot hold one either
        log.info("idle check of notebook replica %s got no answer: %s", replica_id,
                 type(error).__name__)
        return None
    return Activity(last, busy)


def fetch_with(threads):
    """A ``fetch`` for ``cull`` that asks every JupyterLab at once in ``threads`` (an
    executor)."""
    def fetch(jobs):
        futures = [threads.submit(activity, address, rid, token) for address, rid, token in jobs]
        return [future.result() for future in futures]
    return fetch


def culling_minutes():
    """{pool id: T in minutes} of the pools where culling is on."""
    return {pool_id: minutes for pool_id, minutes in
            PoolLimit.select(PoolLimit.pool, PoolLimit.cull_idle_minutes)
            .where(PoolLimit.cull_idle_minutes > 0).tuples()}


def cull(now, fetch, minute=MINUTE):
    """One culling pass at ``now`` (naive UTC). ``fetch`` takes [(address, replica id,
    token)] and returns an ``Activity`` or None for each, in order; ``minute`` is how long
    one minute of a pool's idle time T lasts. Returns the ids of the runs asked to stop."""
    minutes = culling_minutes()
    if not minutes:
        return []
    replicas = list(Replica.select(Replica, Task).join(Task)
                    .where((Task.kind == "notebook") & ~Task.stop_requested
                           & Task.pool.in_(list(minutes)) & (Replica.state == "running")
                           & (Replica.address != "")))
    if not replicas:
        return []
    answers = fetch([(r.address, r.id, r.task.secret) for r in replicas])
    runs = {}
    for replica, seen in zip(replicas, answers, strict=True):
        idle_since = None
        if seen is not None:
            idle_since = now if seen.busy else min(seen.last_activity, now)
            if idle_since != replica.last_activity_at:
                Replica.update(last_activity_at=idle_since).where(
                    Replica.id == replica.id).execute()
        runs.setdefault(replica.task_id, (replica.task, []))[1].append(idle_since)
    stopped = []
    for task_id, (task, seen) in runs.items():
        limit = minutes[task.pool_id] * minute
        if None in seen or any(now - moment < limit for moment in seen):
            continue
        if _all_running_seen(task_id, len(seen)):
            try:
                request_stop(task, CULLED)
            except TaskError:  # it ended meanwhile
                continue
            log.info("notebook run %s stopped: idle for %s minute(s)", task_id,
                     minutes[task.pool_id])
            stopped.append(task_id)
    return stopped


def _all_running_seen(task_id, count):
    """Whether the run has no running replica besides the ``count`` asked (one still
    starting may be used soon)."""
    return Replica.select().where((Replica.task == task_id)
                                  & Replica.state.in_(("starting", "running"))).count() == count
