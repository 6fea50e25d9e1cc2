"""What the miner's overview reads: the nodes Ready and NotReady, chips held and free per
kind, the work running and waiting, earnings today and this month, the latest alerts and
how many users there are. Read-only, a fixed number of queries, each grouped or limited,
so a cluster with a million ledger rows and events costs the queries of an empty one.
"""

from dataclasses import dataclass
from datetime import datetime

from peewee import JOIN, Case, fn

from portal.ledger import month_start
from portal.models import (
    CustomResource,
    EarningDay,
    Group,
    Node,
    NodeChip,
    NodeEvent,
    Replica,
    ReplicaChip,
    ReplicaEvent,
    Subtask,
    Task,
    User,
    utcnow,
)

ALERTS = 10  # alerts on the overview
WORK = ("running", "starting", "pending")  # the replica states of work not ended


@dataclass(frozen=True)
class Nodes:
    """Enabled nodes Ready (a count) and NotReady (the nodes, by name); disabled ones."""

    ready: int
    not_ready: list
    disabled: int


def nodes():
    """The nodes by readiness (``Nodes``): one query."""
    rows = list(Node.select(Node.id, Node.name, Node.enabled, Node.ready, Node.reason,
                            Node.ready_changed_at).order_by(Node.name))
    return Nodes(sum(1 for n in rows if n.enabled and n.ready),
                 [n for n in rows if n.enabled and not n.ready],
                 sum(1 for n in rows if not n.enabled))


@dataclass(frozen=True)
class Chips:
    """The chips of one kind present on enabled nodes: ``name`` the miner's (None: none
    given), how many a replica holds and how many are free."""

    kind: str
    name: str | None
    held: int
    free: int


def chips():
    """``Chips`` per kind, by kind: one query."""
    name = (CustomResource.select(CustomResource.name)
            .where(CustomResource.kind == NodeChip.kind)
            .order_by(CustomResource.id).limit(1))
    query = (NodeChip.select(NodeChip.kind, name, fn.COUNT(NodeChip.id),
                             fn.COUNT(ReplicaChip.id))
             .join(Node, on=(NodeChip.node == Node.id))
             .join(ReplicaChip, JOIN.LEFT_OUTER, on=(ReplicaChip.chip == NodeChip.id))
             .where(NodeChip.present & Node.enabled)
             .group_by(NodeChip.kind).order_by(NodeChip.kind).tuples())
    return [Chips(kind, label, held, total - held) for kind, label, total, held in query]


@dataclass(frozen=True)
class Work:
    """Work not ended, of one task kind (``training`` or ``notebook``): replicas running,
    starting and pending; tasks (notebook runs) with a replica running, and the others,
    which wait (none of their replicas runs yet)."""

    running: int = 0
    starting: int = 0
    pending: int = 0
    tasks_running: int = 0
    tasks_waiting: int = 0


def work():
    """{task kind: ``Work``}: one query over the replicas not ended (their state's index)."""
    def count(state):
        return fn.SUM(Case(None, [(Replica.state == state, 1)], 0))

    running_task = Case(None, [(Replica.state == "running", Replica.task)], None)
    query = (Replica.select(Task.kind, count("running"), count("starting"), count("pending"),
                            fn.COUNT(running_task.distinct()), fn.COUNT(Replica.task.distinct()))
             .join(Task).where(Replica.state.in_(WORK)).group_by(Task.kind).tuples())
    return {kind: Work(int(running or 0), int(starting or 0), int(pending or 0),
                       tasks_running, tasks - tasks_running)
            for kind, running, starting, pending, tasks_running, tasks in query}


def earnings(now=None):
    """``(today, this month)``: micro-units charges earned (UTC), from the daily earnings the
    ledger keeps (``EarningDay``); one query over this month's days."""
    now = now or utcnow()
    today = Case(None, [(EarningDay.day == now.date(), EarningDay.charged)], 0)
    this_day, this_month = (EarningDay.select(fn.SUM(today), fn.SUM(EarningDay.charged))
                            .where(EarningDay.day >= month_start(now).date()).tuples().get())
    return int(this_day or 0), int(this_month or 0)


@dataclass(frozen=True)
class Alert:
    """Something the miner should look at: ``what`` is ``not_ready`` (a node became
    NotReady), ``lost`` (a replica was lost) or ``failed_start`` (a replica failed before it
    ever ran); ``reason`` as stored; the node (None: removed since) and, for a replica, its
    task, role and index."""

    at: datetime
    what: str
    reason: str
    node_id: int | None
    node: str | None
    replica_id: int | None = None
    task: Task | None = None
    role: str = ""
    index: int = 0


def alerts(limit=ALERTS):
    """The latest ``limit`` alerts, newest first: three queries of at most ``limit`` rows."""
    found = [Alert(e.at, "not_ready", e.reason, e.node_id, e.node.name) for e in
             NodeEvent.select(NodeEvent, Node.id, Node.name).join(Node)
             .where(NodeEvent.ready == False)  # noqa: E712
             .order_by(NodeEvent.at.desc(), NodeEvent.id.desc()).limit(limit)]
    found += _replica_alerts("lost", ReplicaEvent.state == "lost", limit)
    found += _replica_alerts("failed_start", (ReplicaEvent.state == "failed")
                             & Replica.started_ns.is_null(), limit)
    return sorted(found, key=lambda alert: alert.at, reverse=True)[:limit]


def _replica_alerts(what, where, limit):
    """The latest ``limit`` replica events matching ``where``, newest first."""
    query = (ReplicaEvent.select(ReplicaEvent, Replica.id, Replica.index, Replica.node,
                                 Task.id, Task.name, Task.kind, Subtask.role, Node.id,
                                 Node.name)
             .join(Replica).join(Task).switch(Replica).join(Subtask)
             .switch(Replica).join(Node, JOIN.LEFT_OUTER)
             .where(where).order_by(ReplicaEvent.at.desc(), ReplicaEvent.id.desc()).limit(limit))
    alerts = []
    for event in query:
        replica = event.replica
        node = replica.node if replica.node_id else None
        alerts.append(Alert(event.at, what, event.reason, replica.node_id,
                            node.name if node else None, replica.id, replica.task,
                            replica.subtask.role, replica.index))
    return alerts


def user_counts():
    """{"renters", "miners", "groups": how many}: two queries."""
    roles = dict(User.select(User.role, fn.COUNT(User.id)).group_by(User.role).tuples())
    return {"renters": roles.get("renter", 0), "miners": roles.get("miner", 0),
            "groups": Group.select().count()}
