"""The maximum run time: the leader's pass stops tasks and notebook runs that ran too long.

A task's limit is the lower of its own and its pool's (``portal.run_limits``), counted from
its earliest started replica (Podman's StartedAt). Past it, the task is asked to stop with
``RUN_TIME_REACHED``; the stop itself (SIGTERM, then SIGKILL) and its billing to the
containers' real end are the ordinary stop's.
"""

import logging
import time

from peewee import fn

from portal.models import PoolLimit, Replica, Task
from portal.reasons import RUN_TIME_REACHED
from portal.run_limits import MINUTE, deadline_ns, effective_minutes
from portal.task_input import TaskError
from portal.tasks import request_stop

log = logging.getLogger(__name__)


def stop_overdue(now_ns=None, minute=MINUTE):
    """Ask every task running past its maximum run time to stop (``minute``: how long one of
    its minutes lasts). Returns the ids of the tasks asked."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    caps = {pool_id: minutes for pool_id, minutes in
            PoolLimit.select(PoolLimit.pool, PoolLimit.max_run_minutes)
            .where(PoolLimit.max_run_minutes > 0).tuples()}
    live = Replica.select(Replica.task).where(Replica.state.in_(("starting", "running")))
    limited = Task.max_run_minutes.is_null(False)
    if caps:
        limited |= Task.pool.in_(list(caps))
    started = (Replica.select(Replica.task, fn.MIN(Replica.started_ns).alias("first"))
               .where(Replica.started_ns.is_null(False)).group_by(Replica.task))
    rows = (Task.select(Task, started.c.first)
            .join(started, on=(started.c.task_id == Task.id))
            .where(~Task.stop_requested & Task.id.in_(live) & limited).objects())
    stopped = []
    for task in rows:
        minutes = effective_minutes(task.max_run_minutes, caps.get(task.pool_id))
        if minutes is None or now_ns < deadline_ns(task.first, minutes, minute):
            continue
        try:
            request_stop(task, RUN_TIME_REACHED)
        except TaskError:  # it ended meanwhile
            continue
        log.info("task %s stopped: its maximum run time (%s min) was reached", task.id, minutes)
        stopped.append(task.id)
    return stopped
