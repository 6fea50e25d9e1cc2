"""A renter's machine-time as they read it: balance, spend per hour and runway, the costs of
their tasks, subtasks and replicas, and their ledger rows. Read-only: writing money is
``portal.ledger``'s job.

Everything is aggregated in SQL over a bounded page of rows, so a renter with
10,000 tasks costs the same few queries per page as one with ten.
"""

import math
from dataclasses import dataclass, field

from flask import abort
from flask_babel import gettext as _
from peewee import JOIN, fn

from portal import settings, values
from portal.models import (
    LedgerEntry,
    Node,
    Replica,
    ResourceSpec,
    Subtask,
    Task,
    UsageMonth,
    User,
)
from portal.reasons import BALANCE_EXHAUSTED

PAGE_SIZE = 20  # tasks (or recharge records) per page of the machine-time page
RECENT_STOPS = 5  # tasks stopped for an exhausted balance, on the overview
CREDITS = ("recharge", "adjust", "refund")  # the "recharge records"


@dataclass(frozen=True)
class Standing:
    """Where a renter stands: ``balance`` and ``spend_per_hour`` (the price snapshots of their
    running replicas, summed) in micro-units; ``low_minutes`` is the miner's warning level;
    ``was_stopped``: whether running out of balance ever stopped their work."""

    balance: int
    spend_per_hour: int
    low_minutes: int
    was_stopped: bool = False

    @property
    def exhausted(self):
        return self.balance <= 0

    @property
    def runway_minutes(self):
        """Whole minutes the balance lasts at the current spend; None while nothing runs."""
        if not self.spend_per_hour:
            return None
        return max(0, self.balance * 60 // self.spend_per_hour)

    @property
    def low(self):
        """Out of money, or it runs out sooner than ``low_minutes`` (exact, no rounding)."""
        return self.exhausted or (
            self.spend_per_hour > 0 and self.balance * 60 < self.low_minutes * self.spend_per_hour)


def _low_minutes():
    try:
        return max(0, int(settings.get("low_balance_minutes")))
    except ValueError:
        return int(settings.DEFAULTS["low_balance_minutes"])


def spend_per_hour(user):
    """Micro-units per hour ``user``'s running replicas cost now (their price snapshots)."""
    total = (Replica.select(fn.SUM(Replica.price_per_hour)).join(Task)
             .where(Task.user == user, Replica.state == "running").scalar())
    return int(total or 0)


def standing(user):
    """``user``'s ``Standing``, read fresh (the scheduler meters every tick)."""
    balance = User.select(User.balance).where(User.id == user.id).scalar()
    stopped = Task.select().where(Task.user == user,
                                  Task.stop_reason == BALANCE_EXHAUSTED).exists()
    return Standing(int(balance or 0), spend_per_hour(user), _low_minutes(), stopped)


def runway_text(minutes):
    """``95`` -> "1 h 35 min" (in the reader's language)."""
    return _("%(hours)d h %(minutes)d min", hours=minutes // 60, minutes=minutes % 60)


def balance_stops(user, limit=RECENT_STOPS):
    """``user``'s latest tasks (not deleted) stopped because the balance ran out."""
    return list(Task.select().where(Task.user == user, Task.stop_reason == BALANCE_EXHAUSTED,
                                    Task.deleted == False)  # noqa: E712
                .order_by(Task.submitted_at.desc(), Task.id.desc()).limit(limit))


# --- consumption records: task -> subtask -> replica --------------------------------------


@dataclass
class SubtaskUse:
    """A subtask's machine-time: its replicas that ran (``Replica`` with ``node_name``) and the
    sums of all of them, from SQL."""

    id: int
    role: str
    spec: str
    count: int
    billed_seconds: int
    charged: int
    replicas: list = field(default_factory=list)


@dataclass
class TaskUse:
    """A task's machine-time: its subtasks (``SubtaskUse``) and their sums."""

    task: Task
    subtasks: list = field(default_factory=list)

    @property
    def billed_seconds(self):
        return sum(sub.billed_seconds for sub in self.subtasks)

    @property
    def charged(self):
        return sum(sub.charged for sub in self.subtasks)


@dataclass
class Page:
    """One page of ``items`` out of ``total``; ``number`` counts from 1."""

    items: list
    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def count(self):
        return max(1, math.ceil(self.total / self.size))


def page_number(text):
    """A page number from the query string; anything but a small positive integer is 1."""
    try:
        return values.whole_number(text, 1, 999_999)
    except values.ValueProblem:
        return 1


def _clamped(number, total, size=PAGE_SIZE):
    return min(number, max(1, math.ceil(total / size)))


def own_task_or_404(user, task_id):
    """``user``'s task ``task_id`` for billing: deleted ones too (their machine-time stays);
    another renter's or none at all is 404."""
    found = None
    if isinstance(task_id, int) and 0 < task_id < 2**63:
        found = Task.get_or_none(Task.id == task_id, Task.user == user)
    if found is None:
        abort(404)
    return found


def consumption(user, number=1, task=None):
    """A ``Page`` of ``user``'s tasks that ran (``TaskUse``), newest first; only ``task`` when
    given. Five queries whatever the number of tasks, subtasks and replicas."""
    ran = Replica.select(Replica.id).where((Replica.task == Task.id)
                                           & Replica.started_ns.is_null(False))
    query = Task.select().where(Task.user == user, fn.EXISTS(ran))
    if task is not None:
        query = query.where(Task.id == task.id)
    total = query.count()
    number = _clamped(number, total)
    tasks = list(query.order_by(Task.submitted_at.desc(), Task.id.desc())
                 .paginate(number, PAGE_SIZE))
    uses = {row.id: TaskUse(row) for row in tasks}
    if not uses:
        return Page([], number, total)
    subtasks = {}
    sums = (Subtask.select(Subtask.id, Subtask.task, Subtask.role, ResourceSpec.name,
                           Subtask.count, fn.COALESCE(fn.SUM(Replica.billed_seconds), 0),
                           fn.COALESCE(fn.SUM(Replica.charged), 0))
            .join(ResourceSpec).switch(Subtask)
            .join(Replica, JOIN.LEFT_OUTER, on=(Replica.subtask == Subtask.id))
            .where(Subtask.task.in_(list(uses)))
            .group_by(Subtask.id, Subtask.task, Subtask.role, ResourceSpec.name,
                      Subtask.count)
            .order_by(Subtask.id).tuples())
    for sid, task_id, role, spec, count, seconds, charged in sums:
        subtasks[sid] = SubtaskUse(sid, role, spec, count, int(seconds), int(charged))
        uses[task_id].subtasks.append(subtasks[sid])
    replicas = (Replica.select(Replica, Node.name.alias("node_name"))
                .join(Node, JOIN.LEFT_OUTER)
                .where(Replica.task.in_(list(uses)), Replica.started_ns.is_null(False))
                .order_by(Replica.subtask, Replica.index))
    for replica in replicas.objects():
        subtasks[replica.subtask_id].replicas.append(replica)
    return Page([uses[row.id] for row in tasks], number, total)


def credits(user, number=1):
    """A ``Page`` of ``user``'s recharge, adjust and refund rows, newest first, each with
    ``actor_name`` (None: the ``billing`` command)."""
    actor = User.alias()
    total = LedgerEntry.select().where(LedgerEntry.user == user,
                                       LedgerEntry.kind.in_(CREDITS)).count()
    number = _clamped(number, total)
    # One range of the (user, kind, id) index per kind, newest first, merged here: asked as
    # one "kind IN (...) ORDER BY id" query, SQLite walks all of the user's rows instead.
    wanted, ids = number * PAGE_SIZE, []
    for kind in CREDITS:
        ids += [entry_id for (entry_id,) in LedgerEntry.select(LedgerEntry.id).where(
            LedgerEntry.user == user, LedgerEntry.kind == kind)
            .order_by(LedgerEntry.id.desc()).limit(wanted).tuples()]
    ids = sorted(ids, reverse=True)[wanted - PAGE_SIZE:wanted]
    rows = (LedgerEntry.select(LedgerEntry, actor.name.alias("actor_name"))
            .join(actor, JOIN.LEFT_OUTER, on=(LedgerEntry.actor == actor.id))
            .where(LedgerEntry.id.in_(ids)).order_by(LedgerEntry.id.desc()).objects())
    return Page(list(rows), number, total)


def total_charged(user):
    """Micro-units ``user`` has been charged for machine-time, in all."""
    total = (UsageMonth.select(fn.SUM(UsageMonth.charged))
             .where(UsageMonth.user == user).scalar())
    return int(total or 0)


# --- ledger rows, for the CSV export and the API ------------------------------------------


def ledger_rows(user, kind=None, task=None, before_id=None, limit=100):
    """``user``'s own ledger rows, newest first, each with ``task_name``, ``spec_name``,
    ``node_name`` and ``actor_name`` (None where the row has none); one query."""
    actor = User.alias()
    query = (LedgerEntry.select(LedgerEntry, Task.name.alias("task_name"),
                                ResourceSpec.name.alias("spec_name"),
                                Node.name.alias("node_name"), actor.name.alias("actor_name"))
             .join(Task, JOIN.LEFT_OUTER, on=(LedgerEntry.task == Task.id))
             .switch(LedgerEntry)
             .join(ResourceSpec, JOIN.LEFT_OUTER, on=(LedgerEntry.spec == ResourceSpec.id))
             .switch(LedgerEntry).join(Node, JOIN.LEFT_OUTER, on=(LedgerEntry.node == Node.id))
             .switch(LedgerEntry)
             .join(actor, JOIN.LEFT_OUTER, on=(LedgerEntry.actor == actor.id))
             .where(LedgerEntry.user == user))
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    if task is not None:
        query = query.where(LedgerEntry.task == task.id)
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    return list(query.order_by(LedgerEntry.id.desc()).limit(limit).objects())
