"""The tasks of Slurm pools as Slurm jobs (docs/slurm.md): Slurm places, Hourglass starts.

Each pass, for every Slurm cluster with open tasks (``SlurmJobs.run``):

- a waiting task without a job gets one: a heterogeneous job, one component per replica
  (its spec's CPUs, memory and chips as GRES), named ``hourglass-<instance>-<task id>``,
  whose batch script only holds the allocation. Its id is stored on the task
  (``Task.slurm_job``); a job whose id was never stored (a crash, an answer lost) is
  cancelled by ``sweep`` since no task claims it;
- while the job waits, the task's reason is Slurm's, in words ("waiting for resources in
  partition tpu");
- once it runs, each replica moves to ``starting`` on the node and with the chips Slurm gave
  its component (``gres_detail``), stored as Hourglass's own placement is
  (``assign.store_assignments``): the start step then starts its container there;
- a job that Slurm ended (time limit, ``scancel``, a node failure) ends the task: waiting
  replicas fail, started ones are stopped (the Epilog has removed their containers already
  where it is installed);
- once every replica has ended, the job is cancelled (which frees the chips) and marked done.

A cluster that does not answer leaves its tasks as they are, saying so, for the next pass.
Nothing here holds state between passes: a restarted leader carries on from the stored
job ids.
"""

import logging
import math
import time

from portal import reasons
from portal.models import Node, Pool, Replica, SlurmCluster, Subtask, Task
from portal.reasons import stored
from portal.run_limits import effective_minutes, pool_cap
from portal.slurm import SlurmError
from portal.task_input import TaskError
from portal.tasks import refresh_state, request_stop
from scheduler import assign, inventory
from scheduler.placement import Assignment, Reason, Usage, limit_reason
from scheduler.slurm_discovery import GRES_KINDS, gres_kind, node_name
from scheduler.slurm_rest import SlurmRefused, client_for
from scheduler.transitions import transition

log = logging.getLogger(__name__)

# The batch script of every job: it only holds the allocation; nothing a renter typed is in it.
SCRIPT = ("#!/bin/sh\n# Hourglass runs this job's replicas in Podman containers.\n"
          "exec sleep infinity\n")
RUNNING = "RUNNING"
# A job whose processes and Epilog are being ended: why (time limit, scancel...) shows once
# it has completed, often after its containers have stopped.
COMPLETING = "COMPLETING"
STOP_REASON_MAX = 128  # Task.stop_reason
# How long after a submission the passes come quickly (every few tenths of a second, not at
# the tick) while Slurm has neither started the job nor said why it waits.
DECIDING_SECONDS = 10
# A job's Slurm time limit is the task's maximum run time plus this: Hourglass stops the
# containers itself first (grace, exact billing), Slurm's limit only backs it up.
TIME_LIMIT_SLACK_MINUTES = 2
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
# Slurm's pending reasons, by the sentence Hourglass shows (reason code in portal.reasons).
REASONS = {"Resources": "slurm_resources", "Priority": "slurm_priority",
           "ReqNodeNotAvail": "slurm_nodes_unavailable", "NodeDown": "slurm_nodes_unavailable",
           "Reservation": "slurm_nodes_unavailable", "BeginTime": "slurm_waiting"}
LIMIT_REASONS = ("Partition", "Assoc", "QOS", "MaxJobs", "JobHeldAdmin")
# A GRES for each chip kind Slurm's nodes may have: "tpu:bm1684x" for sophgo.com/bm1684x.
GRES_OF = {kind: f"{name}:{gres_type}" if gres_type else name
           for (name, gres_type), kind in GRES_KINDS.items()}


def job_name(instance, task_id):
    """The Slurm job name of ``task_id``: how ``sweep`` knows a job of this instance."""
    return f"hourglass-{instance}-{task_id}"


def task_of(instance, name):
    """The task id of a job named ``job_name(instance, id)``, else None."""
    prefix = f"hourglass-{instance}-"
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def reason_for(job, partition):
    """Why a waiting job (a SlurmJob, its leader) waits: a ``placement.Reason`` from
    Slurm's."""
    code = REASONS.get(job.reason.split(",")[0]) if job.reason else "slurm_submitting"
    if code is None:
        code = ("slurm_over_limit" if job.reason.startswith(LIMIT_REASONS)
                else "slurm_waiting")
    return Reason(code, {"partition": partition, "reason": job.reason})


class SlurmJobs:
    """The Slurm step of the pass. ``client_for(cluster)`` gives a cluster's SlurmClient
    (calls bounded by ``timeout`` seconds)."""

    def __init__(self, timeout=5, client_for=client_for):
        self.timeout = timeout
        self.client_for = client_for
        # {task id: until when (monotonic)} for jobs submitted that Slurm has neither started
        # nor given a reason to wait yet: the passes come quickly for them meanwhile
        self._deciding = {}

    def run(self, instance, local_url, peer_ports):
        """One pass over every Slurm cluster with open tasks (see the module); whether a job
        just submitted awaits Slurm's decision (the next pass should come soon, not at the
        next tick)."""
        open_tasks = {}
        for task in _open_tasks():
            open_tasks.setdefault(task.pool.slurm_cluster, []).append(task)
        # A task waits, as on any pool, while its renter's balance does not cover its start
        # or it would take them over the pool's per-user limits.
        short = assign.unaffordable() if open_tasks else {}
        held = _held() if open_tasks else None
        for cluster, tasks in open_tasks.items():
            client = self.client_for(cluster, timeout=self.timeout)
            try:
                jobs = _by_leader(client.jobs())
            except SlurmError as error:
                log.warning("Slurm cluster %r does not answer: %s", cluster.name, error)
                _say(tasks, Reason("slurm_silent", {"cluster": cluster.name,
                                                    "detail": str(error)}))
                continue
            for task in tasks:
                try:
                    if task.slurm_job is None and task.id in short:
                        _say([task], short[task.id])
                    elif task.slurm_job is None and (over := held.over(task)) is not None:
                        _say([task], over)
                    else:
                        self._follow(client, cluster, task, jobs.get(task.slurm_job),
                                     instance, local_url, peer_ports)
                except SlurmError as error:
                    log.warning("Slurm job of task %s: %s", task.id, error)
        now = time.monotonic()
        self._deciding = {task: until for task, until in self._deciding.items() if until > now}
        return bool(self._deciding)

    def sweep(self, instance):
        """Cancel the jobs of this instance that no task claims: a submit whose id was never
        stored, a task deleted or whose job is done. A cluster that does not answer is
        left for the next sweep."""
        for cluster in _clusters():
            client = self.client_for(cluster, timeout=self.timeout)
            try:
                jobs = [job for job in client.jobs() if job.het_offset == 0
                        and (job.state == RUNNING or job.state in WAITING)]
            except SlurmError as error:
                log.info("sweep: no job list from Slurm cluster %r (%s)", cluster.name, error)
                continue
            mine = {job.id: task_of(instance, job.name) for job in jobs}
            claimed = {job for (job,) in Task.select(Task.slurm_job).where(
                Task.id.in_([t for t in mine.values() if t is not None])
                & ~Task.slurm_job_done & ~Task.deleted).tuples()}
            for job_id, task_id in mine.items():
                if task_id is not None and job_id not in claimed:
                    log.info("sweep: cancelling Slurm job %s of cluster %r: no task claims it",
                             job_id, cluster.name)
                    try:
                        client.cancel(job_id)
                    except SlurmError as error:
                        log.warning("sweep: cancelling Slurm job %s failed: %s", job_id, error)

    def _follow(self, client, cluster, task, components, instance, local_url, peer_ports):
        """Move ``task`` on from its job's ``components`` (None: Slurm knows no such job)."""
        states = [state for (state,) in Replica.select(Replica.state)
                  .where(Replica.task == task).tuples()]
        live = [s for s in states if s in ("starting", "running")]
        if "pending" not in states and not live:  # every replica ended: let the job go
            if task.slurm_job is not None:
                client.cancel(task.slurm_job)
            Task.update(slurm_job_done=True).where(Task.id == task.id).execute()
            return
        if task.slurm_job is None:
            self._submit(client, cluster, task, instance)
            return
        leader = components[0] if components else None
        if leader is not None and (leader.state in WAITING):
            if leader.reason:  # Slurm has decided it waits: the tick looks again
                self._deciding.pop(task.id, None)
            if not live:
                _say([task], reason_for(leader, task.pool.partition))
            return
        self._deciding.pop(task.id, None)
        if leader is not None and leader.state == RUNNING and "pending" in states:
            _start_in(task, components, cluster, local_url, peer_ports)
            return
        if leader is not None and leader.state == COMPLETING:  # ended, Slurm's why not known
            _end(task, stored("slurm_job_ending", {"job": task.slurm_job}))
        elif leader is None or leader.state != RUNNING:  # Slurm ended it
            state = leader.state if leader else "gone"
            _end(task, stored("slurm_job_ended", {"job": task.slurm_job, "state": state}))

    def _submit(self, client, cluster, task, instance):
        """Submit ``task``'s job, one component per replica, and store its id; a task Slurm
        refuses fails."""
        try:
            components = _components(task, instance)
            job_id = client.submit(components, SCRIPT)
        except SlurmRefused as error:
            _end(task, stored("slurm_refused", {"detail": str(error)}))
            return
        except ValueError as error:  # a chip kind Slurm has no GRES for
            _end(task, stored("slurm_refused", {"detail": str(error)}))
            return
        Task.update(slurm_job=job_id).where(Task.id == task.id).execute()
        _say([task], Reason("slurm_submitting", {"partition": task.pool.partition}))
        log.info("task %s submitted to Slurm cluster %r as job %s", task.id, cluster.name,
                 job_id)
        self._deciding[task.id] = time.monotonic() + DECIDING_SECONDS


class _Held:
    """What each renter holds per pool, against the pools' per-user limits: their starting
    and running replicas, and those of Slurm jobs submitted and not done (waiting in Slurm).
    ``over(task)`` says why a task may not be submitted, or counts it in and says None."""

    def __init__(self, needs, usage, limits, names):
        self.needs, self.usage, self.limits, self.names = needs, usage, limits, names

    def over(self, task):
        key = (task.user_id, task.pool_id)
        specs = [r.subtask.spec_id for r in _replicas(task)]
        chips = sum(sum(self.needs[spec][2].values()) for spec in specs)
        now = self.usage.get(key, Usage())
        reason = limit_reason(self.limits.get(task.pool_id), now, chips, len(specs),
                              self.names.get(task.pool_id, ""))
        if reason is None:
            self.usage[key] = Usage(now.chips + chips, now.replicas + len(specs))
        return reason


def _held():
    needs = inventory.spec_needs()
    usage, limits = inventory.usage_and_limits(needs)
    usage = dict(usage)
    submitted = (Replica.select(Task.user, Task.pool, Subtask.spec).join(Task)
                 .switch(Replica).join(Subtask)
                 .where((Replica.state == "pending") & Task.slurm_job.is_null(False)
                        & ~Task.slurm_job_done).tuples())
    for user_id, pool_id, spec_id in submitted:
        now = usage.get((user_id, pool_id), Usage())
        usage[(user_id, pool_id)] = Usage(now.chips + sum(needs[spec_id][2].values()),
                                          now.replicas + 1)
    return _Held(needs, usage, limits, inventory.pool_names())


def _open_tasks():
    """The tasks of Slurm pools with something left to do: waiting ones, and those whose
    job is not done."""
    waiting = Replica.select(Replica.task).where(Replica.state == "pending")
    return list(Task.select(Task, Pool).join(Pool).where(
        Pool.slurm_cluster.is_null(False) & ~Task.slurm_job_done
        & (Task.slurm_job.is_null(False)
           | (Task.id.in_(waiting) & ~Task.stop_requested & ~Task.deleted)))
        .order_by(Task.id))


def _clusters():
    return list(SlurmCluster.select().order_by(SlurmCluster.id))


def _by_leader(jobs):
    """{leader id: [its components in offset order]} of slurmrestd's job list."""
    found = {}
    for job in jobs:
        found.setdefault(job.het_job_id or job.id, []).append(job)
    return {leader: sorted(group, key=lambda job: job.het_offset)
            for leader, group in found.items()}


def _replicas(task):
    """The task's replicas in the order of its job's components."""
    return list(Replica.select(Replica, Subtask).join(Subtask)
                .where(Replica.task == task).order_by(Subtask.id, Replica.index))


def _components(task, instance):
    """The job components of ``task``'s replicas; ValueError for a chip kind without GRES."""
    needs = inventory.spec_needs()
    limit = effective_minutes(task.max_run_minutes, pool_cap(task.pool_id))
    out = []
    for replica in _replicas(task):
        cpu, memory, chips = needs[replica.subtask.spec_id]
        gres = []
        for kind, count in sorted(chips.items()):
            if kind not in GRES_OF:
                raise ValueError(f"no Slurm GRES is known for {kind} chips")
            gres.append(f"{GRES_OF[kind]}:{count}")
        component = {"name": job_name(instance, task.id), "partition": task.pool.partition,
                     "tasks": 1, "cpus_per_task": max(1, math.ceil(cpu / 1000)),
                     "memory_per_node": memory, "current_working_directory": "/tmp",
                     "standard_output": "/dev/null", "standard_error": "/dev/null"}
        if gres:
            component["gres"] = ",".join(gres)
        if limit:  # Hourglass stops it at its limit; Slurm's is the backstop
            component["time_limit"] = int(limit) + TIME_LIMIT_SLACK_MINUTES
        out.append(component)
    return out


def _start_in(task, components, cluster, local_url, peer_ports):
    """Store the allocation of ``task``'s running job: each pending replica on its
    component's node with its component's chips (the start step starts it there)."""
    replicas = _replicas(task)
    if len(components) != len(replicas) or any(len(c.nodes) != 1 for c in components):
        _end(task, stored("slurm_refused", {"detail": "its job's allocation does not match "
                                                      "its replicas"}))
        return
    names = {node_name(cluster.name, c.nodes[0]) for c in components}
    nodes = dict(Node.select(Node.name, Node.id).where(
        Node.name.in_(names) & (Node.slurm_cluster == cluster)).tuples())
    missing = names - set(nodes)
    if missing:  # discovery has not seen them yet: the next pass tries again
        log.info("task %s waits for discovery of %s", task.id, ", ".join(sorted(missing)))
        return
    assignments = []
    for replica, component in zip(replicas, components, strict=True):
        if replica.state != "pending":
            continue
        slurm_node = component.nodes[0]
        chips = {}
        for (name, gres_type), indices in component.gres_detail.get(slurm_node, {}).items():
            kind = gres_kind(name, gres_type)
            if kind is not None:
                chips[kind] = tuple(indices)
        assignments.append(Assignment(replica.id, nodes[node_name(cluster.name, slurm_node)],
                                      chips))
    if assignments:
        assign.store_assignments({task.id: tuple(assignments)}, local_url, peer_ports)


def _end(task, reason):
    """End ``task`` for ``reason``: its waiting replicas fail, its started ones stop."""
    for replica in Replica.select(Replica.id).where(
            (Replica.task == task) & (Replica.state == "pending")):
        transition(replica, "failed", reason, from_state="pending")
    refresh_state(task)
    if not task.stop_requested:
        try:
            # Stored as a code where it fits, so each reader sees it in their language.
            request_stop(task, reason if len(reason) <= STOP_REASON_MAX
                         else reasons.english(reason)[:STOP_REASON_MAX])
        except TaskError:  # every replica has ended
            pass


def _say(tasks, reason):
    """``reason`` (a ``placement.Reason``) as the reason of those of ``tasks`` that still
    wait."""
    assign.store_reasons({task.id: reason for task in tasks if not task.stop_requested})
