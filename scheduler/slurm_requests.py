"""What a Slurm pool's task asks of Slurm, and what Slurm gave it (docs/slurm.md).

``components`` turns a task into the components of its heterogeneous job, one per replica;
``assignments`` reads a running job's allocation back as Hourglass placements (node and
chip indices per replica), refusing one that does not match what the replicas need;
``Held`` applies the pools' per-user limits before a job is submitted.
"""

import math

from portal.models import Replica, Subtask, Task
from portal.run_limits import effective_minutes, pool_cap
from scheduler import inventory
from scheduler.placement import Assignment, Usage, limit_reason
from scheduler.slurm_discovery import GRES_KINDS, gres_kind, node_name

# A GRES for each chip kind Slurm's nodes may have: "tpu:bm1684x" for sophgo.com/bm1684x.
GRES_OF = {kind: f"{name}:{gres_type}" if gres_type else name
           for (name, gres_type), kind in GRES_KINDS.items()}
# A job's Slurm time limit is the task's maximum run time plus this: Hourglass stops the
# containers itself first (grace, exact billing), Slurm's limit only backs it up. Slurm's
# clock starts with the job, Hourglass's with the container, after any image copy.
TIME_LIMIT_SLACK_MINUTES = 10


class Unusable(Exception):
    """A running job's allocation that Hourglass cannot use (yet), saying why."""


def job_name(instance, task_id):
    """The Slurm job name of ``task_id``: how a job of this instance is known without its id."""
    return f"hourglass-{instance}-{task_id}"


def task_of(instance, name):
    """The task id of a job named ``job_name(instance, id)``, else None."""
    prefix = f"hourglass-{instance}-"
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def replicas_of(task):
    """The task's replicas (with their subtasks) in the order of its job's components."""
    return list(Replica.select(Replica, Subtask).join(Subtask)
                .where(Replica.task == task).order_by(Subtask.id, Replica.index))


def components(task, instance, needs):
    """The job components of ``task``'s replicas (``needs``: ``inventory.spec_needs()``);
    ValueError for a chip kind Slurm has no GRES for. Nothing the renter typed is in them."""
    limit = effective_minutes(task.max_run_minutes, pool_cap(task.pool_id))
    out = []
    for replica in replicas_of(task):
        cpu, memory, chips = needs[replica.subtask.spec_id]
        gres = []
        for kind, count in sorted(chips.items()):
            if kind not in GRES_OF:
                raise ValueError(f"no Slurm GRES is known for {kind} chips")
            gres.append(f"{GRES_OF[kind]}:{count}")
        component = {"name": job_name(instance, task.id), "partition": task.pool.partition,
                     "tasks": 1, "cpus_per_task": max(1, math.ceil(cpu / 1000)),
                     "memory_per_node": memory, "current_working_directory": "/tmp",
                     "standard_output": "/dev/null", "standard_error": "/dev/null",
                     # a node failure ends it (Hourglass ends the task), never a rerun
                     # of a job whose containers Hourglass believes it still owns
                     "requeue": False}
        if gres:
            component["gres"] = ",".join(gres)
        if limit:  # Hourglass stops it at its limit; Slurm's is the backstop
            component["time_limit"] = int(limit) + TIME_LIMIT_SLACK_MINUTES
        out.append(component)
    return out


def assignments(task, job, cluster, node_ids, needs):
    """The placements of ``task``'s pending replicas from its running job's components
    ``job`` (``node_ids``: {Node name: id} of the cluster's nodes): each on its component's
    node with exactly the chips of its component's GRES. Raises Unusable when the
    allocation does not match the replicas (count, one node each, chips of each kind) or
    names a node discovery has not found."""
    replicas = replicas_of(task)
    if len(job) != len(replicas) or any(len(c.nodes) != 1 for c in job):
        raise Unusable("its job's allocation does not match its replicas")
    out = []
    for replica, component in zip(replicas, job, strict=True):
        if replica.state != "pending":
            continue
        slurm_node = component.nodes[0]
        node_id = node_ids.get(node_name(cluster.name, slurm_node))
        if node_id is None:
            raise Unusable(f"node {slurm_node} is not known to Hourglass yet")
        chips = {}
        for (name, gres_type), indices in component.gres_detail.get(slurm_node, {}).items():
            kind = gres_kind(name, gres_type)
            if kind is not None:
                chips[kind] = tuple(indices)
        wanted = needs[replica.subtask.spec_id][2]
        if {kind: len(indices) for kind, indices in chips.items() if indices} != wanted:
            raise Unusable(f"the chips Slurm gave on {slurm_node} are not the ones asked for")
        out.append(Assignment(replica.id, node_id, chips))
    return tuple(out)


class Held:
    """What each renter holds per pool, against the pools' per-user limits: their starting
    and running replicas, and those of Slurm jobs submitted and not done (waiting in Slurm).
    ``over(task)`` says why a task may not be submitted, or counts it in and says None."""

    def __init__(self, needs):
        self.needs = needs
        usage, self.limits = inventory.usage_and_limits(needs)
        self.usage = dict(usage)
        self.names = inventory.pool_names()
        submitted = (Replica.select(Task.user, Task.pool, Subtask.spec).join(Task)
                     .switch(Replica).join(Subtask)
                     .where((Replica.state == "pending") & Task.slurm_job.is_null(False)
                            & ~Task.slurm_job_done).tuples())
        for user_id, pool_id, spec_id in submitted:
            self._add((user_id, pool_id), sum(needs[spec_id][2].values()), 1)

    def over(self, task):
        specs = [r.subtask.spec_id for r in replicas_of(task)]
        chips = sum(sum(self.needs[spec][2].values()) for spec in specs)
        key = (task.user_id, task.pool_id)
        reason = limit_reason(self.limits.get(task.pool_id), self.usage.get(key, Usage()),
                              chips, len(specs), self.names.get(task.pool_id, ""))
        if reason is None:
            self._add(key, chips, len(specs))
        return reason

    def _add(self, key, chips, replicas):
        now = self.usage.get(key, Usage())
        self.usage[key] = Usage(now.chips + chips, now.replicas + replicas)
