"""What a renter's overview reads: their tasks and notebooks counted per state, their
latest runs with what each cost, the replicas running now with their cost so far, and
what they spent per day. Read-only, each part one query in SQL (grouped or limited), so a
renter with 10,000 tasks costs the same queries as one with ten.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from peewee import JOIN, fn

from portal.models import LedgerEntry, Notebook, Replica, ResourceSpec, Subtask, Task, utcnow
from portal.usage import CREDITS

LATEST = 5  # runs, and recharge records, on the overview
RUNNING = 50  # running replicas listed at most
DAYS = 30  # days in the spend chart
NEVER = "never started"  # a notebook without a run


def task_counts(user):
    """{state: count} of ``user``'s training tasks that are not deleted (``Task.state``, the
    cache the scheduler keeps)."""
    query = (Task.select(Task.state, fn.COUNT(Task.id))
             .where(Task.user == user, Task.kind == "training",
                    Task.deleted == False)  # noqa: E712
             .group_by(Task.state).tuples())
    return dict(query)


def notebook_counts(user):
    """{state: count} of ``user``'s notebooks that are not deleted, by their latest run's
    state; ``NEVER`` for a notebook that never started."""
    run = Task.alias()
    latest = run.select(fn.MAX(run.id)).where(run.notebook == Notebook.id)
    query = (Notebook.select(Task.state, fn.COUNT(Notebook.id))
             .join(Task, JOIN.LEFT_OUTER, on=(Task.id == latest))
             .where(Notebook.user == user, Notebook.deleted == False)  # noqa: E712
             .group_by(Task.state).tuples())
    return {state or NEVER: count for state, count in query}


def latest_runs(user, limit=LATEST):
    """``user``'s latest runs that started (training tasks and notebook runs, deleted ones
    too: their machine-time stays), newest first, each with ``charged`` (micro-units)."""
    return list(Task.select(Task, fn.SUM(Replica.charged).alias("charged"))
                .join(Replica, on=(Replica.task == Task.id))
                .where(Task.user == user, Replica.started_ns.is_null(False))
                .group_by(Task.id).order_by(Task.id.desc()).limit(limit))


def latest_credits(user, limit=LATEST):
    """``user``'s latest recharge, adjust and refund rows, newest first: one range of the
    ledger's (user, kind, id) index per kind, merged here (asked as one "kind IN (...)"
    query, SQLite would walk all of the user's rows, charges included)."""
    rows = []
    for kind in CREDITS:
        rows.extend(LedgerEntry.select()
                    .where(LedgerEntry.user == user, LedgerEntry.kind == kind)
                    .order_by(LedgerEntry.id.desc()).limit(limit))
    return sorted(rows, key=lambda entry: entry.id, reverse=True)[:limit]


@dataclass(frozen=True)
class Running:
    """A replica running now: its task (a training task or a notebook's run), role, index,
    spec name, Podman's start (ns), its price snapshot and what it was charged so far."""

    task: Task
    role: str
    index: int
    spec: str
    started_ns: int | None
    price_per_hour: int
    charged: int


def running(user, limit=RUNNING):
    """``user``'s replicas running now, oldest first (``Running``)."""
    query = (Replica.select(Replica, Task, Subtask.role, ResourceSpec.name)
             .join(Task).switch(Replica).join(Subtask).join(ResourceSpec)
             .where(Task.user == user, Replica.state == "running")
             .order_by(Replica.started_ns, Replica.id).limit(limit))
    return [Running(r.task, r.subtask.role, r.index, r.subtask.spec.name, r.started_ns,
                    r.price_per_hour or 0, r.charged) for r in query]


def spend_per_day(user, days=DAYS, today=None):
    """[(day, micro-units charged that day)] for the last ``days`` days up to ``today``
    (UTC), oldest first, days without a charge included as 0."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    day = fn.DATE(LedgerEntry.at).coerce(False)
    query = (LedgerEntry.select(day, fn.SUM(LedgerEntry.amount))
             .where(LedgerEntry.user == user, LedgerEntry.kind == "charge",
                    LedgerEntry.at >= datetime.combine(first, time()))
             .group_by(day).tuples())
    spent = {_day(when): -int(total or 0) for when, total in query}
    return [(first + timedelta(days=n), spent.get(first + timedelta(days=n), 0))
            for n in range(days)]


def _day(value):
    """SQLite answers DATE() as text, PostgreSQL as a date."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
