"""The maximum run time of tasks and notebooks: the renter's choice, capped by the miner's
per pool.

A task's limit is its own ``Task.max_run_minutes`` or its pool's
``PoolLimit.max_run_minutes``, whichever is lower (either None: the other; both: no
limit). A renter may choose less than the pool's cap, never more (``check_minutes``);
left empty, the pool's cap holds. The time counts from the task's earliest started replica
(Podman's StartedAt); past its deadline the scheduler stops it with ``RUN_TIME_REACHED``
(``scheduler.run_limits``), and it is billed, as any stop, to its containers' real end.
Pages show the time left (``run_limit``) counting down.
"""

import math
import time
from dataclasses import dataclass
from datetime import timedelta

from flask_babel import gettext as _

from portal import values
from portal.access import open_pool
from portal.models import PoolLimit, Replica
from portal.pools import MAX_RUN_MINUTES
from portal.task_input import TaskError

MINUTE = timedelta(minutes=1)


def pool_cap(pool):
    """The miner's maximum run time in ``pool`` (a Pool or its id), in minutes, or None."""
    return (PoolLimit.select(PoolLimit.max_run_minutes)
            .where(PoolLimit.pool == pool).scalar())


def check_minutes(value, pool, field="max_run_minutes"):
    """A renter's maximum run time as typed or sent: empty (or None) is None (the pool's
    cap, if any, holds), else whole minutes from 1 to MAX_RUN_MINUTES, and at most the cap
    of ``pool`` (a Pool, or None when the pool is not known yet). Raises TaskError."""
    minutes = values.checked(TaskError, field, values.optional_whole_number, value, 1,
                             MAX_RUN_MINUTES,
                             message=_("Maximum run time: whole minutes from 1 to %(n)d, or "
                                       "empty.", n=MAX_RUN_MINUTES))
    cap = pool_cap(pool) if pool is not None and minutes is not None else None
    if cap is not None and minutes > cap:
        raise TaskError({field: _("Pool '%(pool)s' allows at most %(n)d minutes of run time.",
                                  pool=pool.name, n=cap)})
    return minutes


def with_limit(check, minutes, user, pool_name):
    """``check()`` (``user``'s submission's ``task_input.checked_task``) with
    ``"max_run_minutes"`` added (``check_minutes`` against pool ``pool_name`` when it is open
    to ``user``), every bad field raised together."""
    errors, checked = {}, {}
    try:
        checked = check()
    except TaskError as exc:
        errors.update(exc.errors)
    try:
        pool = checked.get("pool") or open_pool(user, pool_name)
        checked["max_run_minutes"] = check_minutes(minutes, pool)
    except TaskError as exc:
        errors.update(exc.errors)
    if errors:
        raise TaskError(errors)
    return checked


def effective_minutes(own, cap):
    """The lower of a task's own limit and its pool's cap, either None meaning none."""
    chosen = [minutes for minutes in (own, cap) if minutes]
    return min(chosen) if chosen else None


def deadline_ns(started_ns, minutes, minute=MINUTE):
    """When a task whose earliest replica started at ``started_ns`` (Podman's nanoseconds)
    reaches ``minutes`` of running (each ``minute`` long)."""
    return started_ns + round(minutes * minute.total_seconds() * 1e9)


@dataclass(frozen=True)
class RunLimit:
    """A running task's maximum run time as its pages show it: ``minutes`` in all, and
    ``seconds_left`` (whole, rounded up, never below 0)."""

    minutes: int
    seconds_left: int

    @property
    def minutes_left(self):
        """The time left in whole minutes, rounded up."""
        return math.ceil(self.seconds_left / 60)

    @property
    def pattern(self):
        """The words of a time left with their placeholders, for the page's script to fill
        in: "%(hours)d h %(minutes)d min" in the reader's language (``usage.runway_text``)."""
        return _("%(hours)d h %(minutes)d min")


def run_limit(task, replicas=None, now_ns=None):
    """The ``RunLimit`` of ``task`` while a replica runs, or None (no limit, nothing
    started yet, or stopping already). ``replicas``: its ``Replica`` rows, if at hand."""
    if task.stop_requested:
        return None
    minutes = effective_minutes(task.max_run_minutes, pool_cap(task.pool_id))
    if minutes is None:
        return None
    if replicas is None:
        replicas = Replica.select(Replica.state, Replica.started_ns).where(Replica.task == task)
    running = [r for r in replicas if r.state in ("starting", "running")]
    started = [r.started_ns for r in replicas if r.started_ns is not None]
    if not running or not started:
        return None
    left_ns = deadline_ns(min(started), minutes) - (now_ns or time.time_ns())
    return RunLimit(minutes, max(0, math.ceil(left_ns / 1e9)))


def limit_text(minutes):
    """A maximum run time in words ("1 h 30 min"), or "the pool's" when there is none."""
    if not minutes:
        return _("none (the pool's maximum, if any)")
    return _("%(hours)d h %(minutes)d min", hours=minutes // 60, minutes=minutes % 60)
