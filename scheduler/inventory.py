"""The placement snapshot, read from the database in a fixed number of queries.

Turns rows (nodes and their chips, held chips, pending replicas, specs,
limits) into ``scheduler.placement`` inputs. A node takes new replicas when
it is enabled, Ready, not cordoned and not draining; its free CPU, memory and
chips are its capacity minus what starting and running replicas hold (and a lost
replica, until its container is confirmed gone). A chip the last discovery did
not find is neither free nor counted.
"""

from collections import defaultdict

from peewee import fn

from portal.capacity import ACTIVE, CPU, MEMORY, held_cpu_memory, schedulable
from portal.db import Prepared
from portal.models import (
    CustomResource,
    Node,
    NodeChip,
    Pool,
    PoolLimit,
    Replica,
    ReplicaChip,
    ResourceSpec,
    SpecResource,
    Subtask,
    Task,
    User,
)
from scheduler.placement import Limits, NodeState, ReplicaNeed, TaskRequest, Usage


def spec_needs():
    """{spec id: (cpu_millis, memory_mib, {kind: count})} for every spec."""
    chips = defaultdict(dict)
    query = (SpecResource.select(SpecResource.spec, CustomResource.kind, SpecResource.count)
             .join(CustomResource).tuples())
    for spec_id, kind, count in query:
        if count:
            chips[spec_id][kind] = chips[spec_id].get(kind, 0) + count
    return {spec_id: (cpu, mem, chips[spec_id]) for spec_id, cpu, mem in
            ResourceSpec.select(ResourceSpec.id, ResourceSpec.cpu_millis,
                                ResourceSpec.memory_mib).tuples()}


def default_pool_id():
    return Pool.get(Pool.is_default == True).id  # noqa: E712  (peewee expression)


def node_states():
    """The placement view of every node (unschedulable ones included, flagged, Slurm's
    compute nodes among them); what is held is counted as the pages count it
    (``portal.capacity``)."""
    default = default_pool_id()
    nodes = list(Node.select())
    used = held_cpu_memory()
    held = {chip_id for (chip_id,) in ReplicaChip.select(ReplicaChip.chip).tuples()}
    free, total = defaultdict(lambda: defaultdict(list)), defaultdict(lambda: defaultdict(int))
    for chip in NodeChip.select(NodeChip.id, NodeChip.node, NodeChip.kind,
                                NodeChip.index).where(NodeChip.present):
        total[chip.node_id][chip.kind] += 1
        if chip.id not in held:
            free[chip.node_id][chip.kind].append(chip.index)
    # A Slurm compute node is never Hourglass's to place on: Slurm places there (docs/slurm.md).
    return [NodeState(
        id=n.id, pool_id=n.pool_id or default,
        schedulable=schedulable(n) and n.slurm_cluster_id is None,
        cpu_millis_free=max(0, n.cpu_millis - used.get(n.id, {}).get(CPU, 0)),
        memory_mib_free=max(0, n.memory_mib - used.get(n.id, {}).get(MEMORY, 0)),
        chips_free={k: tuple(sorted(v)) for k, v in free[n.id].items()},
        cpu_millis_total=n.cpu_millis, memory_mib_total=n.memory_mib,
        chips_total=dict(total[n.id])) for n in nodes]


# The two queries whose rows grow with the tasks waiting, prepared (``portal.db.Prepared``):
# a pass runs them on every wake, i.e. after every submission.
_PENDING = Prepared(lambda: (
    Replica.select(Replica.id, Replica.index, Subtask.id, Subtask.spec, Task.id, Task.user,
                   Task.pool, Task.submitted_at)
    .join(Subtask).switch(Replica).join(Task)
    .where((Replica.state == "pending") & (Task.stop_requested == False)  # noqa: E712
           & (Task.deleted == False)  # noqa: E712
           # Slurm places a Slurm pool's tasks (scheduler.slurm_jobs)
           & Task.pool.not_in(Pool.select(Pool.id).where(Pool.slurm_cluster.is_null(False))))
    .order_by(Task.id, Subtask.id, Replica.index)))
_START_COSTS = Prepared(lambda: (
    Task.select(Task.id, Task.user, fn.SUM(ResourceSpec.price_per_hour))
    .join(Subtask, on=Subtask.task == Task.id).join(ResourceSpec)
    .join(Replica, on=Replica.subtask == Subtask.id)
    .where(Task.id.in_(Replica.select(Replica.task).where(Replica.state == "pending")))
    .group_by(Task.id, Task.user)))


def pending_tasks(needs):
    """Every task with replicas waiting for Hourglass to place them (not Slurm's), with just
    those replicas."""
    tasks, rows = {}, _PENDING.rows()
    for replica_id, _index, _subtask, spec_id, task_id, user_id, pool_id, submitted in rows:
        cpu, mem, chips = needs[spec_id]
        entry = tasks.setdefault(task_id, [user_id, pool_id, submitted, []])
        entry[3].append(ReplicaNeed(replica_id, cpu, mem, chips))
    return [TaskRequest(task_id, user, pool, submitted, tuple(replicas))
            for task_id, (user, pool, submitted, replicas) in tasks.items()]


def start_costs():
    """{task id: (user id, price per hour of all its replicas)} for tasks with replicas
    waiting to be placed: what a start must be able to pay for."""
    return {task_id: (user_id, int(per_hour))
            for task_id, user_id, per_hour in _START_COSTS.rows()}


def balances(user_ids):
    return dict(User.select(User.id, User.balance).where(User.id.in_(list(user_ids))).tuples())


def usage_and_limits(needs):
    """What each user holds per pool now, and each pool's per-user limits."""
    usage = defaultdict(lambda: [0, 0])
    active = (Replica.select(Task.user, Task.pool, Subtask.spec).join(Task)
              .switch(Replica).join(Subtask).where(Replica.state.in_(ACTIVE)).tuples())
    for user_id, pool_id, spec_id in active:
        usage[(user_id, pool_id)][0] += sum(needs[spec_id][2].values())
        usage[(user_id, pool_id)][1] += 1
    limits = {row.pool_id: Limits(row.max_chips_per_user, row.max_replicas_per_user)
              for row in PoolLimit.select()}
    return {key: Usage(chips, replicas) for key, (chips, replicas) in usage.items()}, limits


def pool_names():
    return dict(Pool.select(Pool.id, Pool.name).tuples())
