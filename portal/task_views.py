"""What a renter sees of a task: its state derived from its replicas' states, the read
model (``TaskView`` with its subtasks, replicas and their transitions, read in a few
queries) and stored reasons in the reader's language. Read-only: ``portal.tasks`` writes.
"""

import json
from dataclasses import dataclass, field

from flask import g
from flask_babel import gettext
from peewee import JOIN

from portal import reasons
from portal.models import (
    REPLICA_ENDED,
    CustomResource,
    Node,
    Pool,
    Replica,
    ReplicaEvent,
    ResourceSpec,
    Subtask,
    Task,
)


def reason_text(reason):
    """A stored reason in the reader's language: the portal's own (``reasons.PORTAL``), or
    the scheduler's pending reason (``reasons.render``); other text (e.g. Podman's) as it
    is."""
    if reason in reasons.PORTAL:
        return gettext(reasons.PORTAL[reason])
    parsed = reasons.loads(reason or "")
    if parsed is None:
        return reason
    if "kind_names" not in g:  # one query per request, however many tasks wait
        g.kind_names = {}
        for name, kind in (CustomResource.select(CustomResource.name, CustomResource.kind)
                           .order_by(CustomResource.id).tuples()):
            g.kind_names.setdefault(kind, name)
    return reasons.render(*parsed, kind_names=g.kind_names, translate=gettext)


# --- states ------------------------------------------------------------------------------


def derive_state(replica_states):
    """A task's (or subtask's) state from its replicas' states.

    ==========================================  =========
    replicas                                    state
    ==========================================  =========
    none                                        pending
    any running                                 running
    else any starting                           starting
    else any pending                            pending
    all ended, any failed                       failed
    all ended, else any lost                    lost
    all ended, else any stopped                 stopped
    all succeeded                               succeeded
    ==========================================  =========
    """
    states = set(replica_states)
    for state in ("running", "starting", "pending", "failed", "lost", "stopped", "succeeded"):
        if state in states:
            return state
    return "pending"


def all_ended(replica_states):
    """Whether every one of ``replica_states`` is an ended one (``REPLICA_ENDED``); true of
    none."""
    return all(state in REPLICA_ENDED for state in replica_states)


# --- the read model ----------------------------------------------------------------------


@dataclass
class ReplicaView:
    """A replica with its node (``replica.node``, or None) and its transitions, oldest first
    (loaded for one task's page, empty in lists)."""

    replica: Replica
    events: list = field(default_factory=list)


@dataclass
class SubtaskView:
    """A subtask, its spec (``subtask.spec``), how many replicas it asks for (``count``) and
    its replicas (``ReplicaView``) by index."""

    subtask: Subtask
    replicas: list = field(default_factory=list)

    @property
    def count(self):
        return self.subtask.count

    @property
    def state(self):
        return derive_state(r.replica.state for r in self.replicas)

    @property
    def cost(self):
        """Micro-units charged so far: the sum of the replicas' ``Replica.charged`` (loaded
        already, no query)."""
        return sum(item.replica.charged for item in self.replicas)


@dataclass
class TaskView:
    """A task with its subtasks and replicas, its state derived from them (not the cache),
    and which of Stop, Run again and Delete apply."""

    task: Task
    subtasks: list = field(default_factory=list)

    def __post_init__(self):
        self.argv = json.loads(self.task.argv)
        self.env = json.loads(self.task.env)

    @property
    def replicas(self):
        return [replica for subtask in self.subtasks for replica in subtask.replicas]

    @property
    def state(self):
        return derive_state(r.replica.state for r in self.replicas)

    @property
    def ended(self):
        return all_ended(r.replica.state for r in self.replicas)

    @property
    def cost(self):
        """Micro-units charged so far, live while it runs (``SubtaskView.cost``)."""
        return sum(subtask.cost for subtask in self.subtasks)

    @property
    def stopping(self):
        return self.task.stop_requested and not self.ended

    @property
    def can_stop(self):
        return not self.ended and not self.task.stop_requested

    @property
    def runs_again(self):
        """The ids of the tasks that run this one again (its renter's, or a move off a
        draining node), oldest first; one query."""
        return [tid for (tid,) in Task.select(Task.id).where(
            (Task.rerun_of == self.task.id) & (Task.deleted == False)  # noqa: E712
        ).order_by(Task.id).tuples()]


def views_of(tasks, events):
    """``TaskView``s of ``tasks`` (training runs or notebook runs) in their order, with
    their replicas' transitions when ``events``: three queries (four with ``events``)."""
    tasks = list(tasks)
    views = {task.id: TaskView(task) for task in tasks}
    subtasks, replicas = {}, {}
    query = (Subtask.select(Subtask, ResourceSpec).join(ResourceSpec)
             .where(Subtask.task.in_(list(views))).order_by(Subtask.id))
    for subtask in query:
        subtasks[subtask.id] = SubtaskView(subtask)
        views[subtask.task_id].subtasks.append(subtasks[subtask.id])
    query = (Replica.select(Replica, Node).join(Node, JOIN.LEFT_OUTER)
             .where(Replica.task.in_(list(views))).order_by(Replica.index))
    for replica in query:
        replicas[replica.id] = ReplicaView(replica)
        subtasks[replica.subtask_id].replicas.append(replicas[replica.id])
    if events and replicas:
        query = (ReplicaEvent.select().where(ReplicaEvent.replica.in_(list(replicas)))
                 .order_by(ReplicaEvent.at, ReplicaEvent.id))
        for event in query:
            replicas[event.replica_id].events.append(event)
    return [views[task.id] for task in tasks]


def task_view(task):
    """One task with everything its page shows, transitions included."""
    return views_of([task], events=True)[0]


def task_views(user):
    """``user``'s training tasks that are not deleted, newest first, without transitions."""
    tasks = (Task.select(Task, Pool).join(Pool)
             .where(Task.user == user, Task.deleted == False, Task.kind == "training")  # noqa: E712
             .order_by(Task.submitted_at.desc(), Task.id.desc()))
    return views_of(tasks, events=False)
