"""The tasks of Slurm pools as Slurm jobs (docs/slurm.md): Slurm places, Hourglass starts.

Each pass, for every Slurm cluster with open tasks (``SlurmJobs.run``):

- a waiting task without a job gets one: a heterogeneous job, one component per replica
  (its spec's CPUs, memory and chips as GRES), named ``hourglass-<instance>-<task id>``,
  whose batch script only holds the allocation. Its id is stored on the task
  (``Task.slurm_job``); a job whose id was never stored (a crash, an answer lost) is found
  by its name and adopted before anything is submitted again, and ``sweep`` cancels a job
  of this instance that no task claims;
- while the job waits, the task's reason is Slurm's, in words ("waiting for resources in
  partition tpu");
- once it runs, each replica moves to ``starting`` on the node and with the chips Slurm gave
  its component (``gres_detail``), stored as Hourglass's own placement is
  (``assign.store_assignments``): the start step then starts its container there;
- a job that Slurm ended (time limit, ``scancel``, a node failure) ends the task: waiting
  replicas fail, started ones are stopped (the Epilog has stopped their containers already
  where it is installed);
- once every replica has ended, the job is cancelled (which frees the chips) and marked done.

A cluster that does not answer (or stops answering during the pass) is left alone for the
rest of the pass, its waiting tasks saying so. What is kept between passes only makes them
quicker or bounded (jobs Slurm is deciding on, refusals, unusable allocations); a
restarted leader carries on from the stored job ids.
"""

import logging
import time

from portal import reasons
from portal.models import Node, Pool, Replica, SlurmCluster, Task
from portal.reasons import stored
from portal.slurm import SlurmError
from portal.task_input import TaskError
from portal.tasks import refresh_state, request_stop
from scheduler import assign, inventory
from scheduler.placement import Reason
from scheduler.slurm_requests import Held, Unusable, assignments, components, task_of
from scheduler.slurm_rest import SlurmRefused, client_for
from scheduler.transitions import transition

log = logging.getLogger(__name__)

# The batch script of every job: it only holds the allocation; nothing a renter typed is in it.
SCRIPT = ("#!/bin/sh\n# Hourglass runs this job's replicas in Podman containers.\n"
          "exec sleep infinity\n")
RUNNING = "RUNNING"
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
# A job whose processes and Epilog are being ended: why (time limit, scancel...) shows once
# it has completed, often after its containers have stopped.
COMPLETING = "COMPLETING"
STOP_REASON_MAX = 128  # Task.stop_reason
# How long after a submission the passes come quickly (every few tenths of a second, not at
# the tick) while Slurm has neither started the job nor said why it waits.
DECIDING_SECONDS = 10
# Slurm's refusals that no retry changes (slurm_errno.h): a bad partition, access denied,
# nodes not in the partition, too many CPUs, a bad node count, a node or partition
# configuration no node has, a bad time limit, a bad GRES. Others are tried again, for
# REFUSED_SECONDS, unless they only say "not now" (WAIT_REFUSALS).
PERMANENT_REFUSALS = {2000, 2002, 2004, 2005, 2006, 2014, 2015, 2051, 2072}
# Refusals that say "not now": nodes busy, an accounting limit such as a QOS's MaxSubmitJobs
# (every job is submitted as one Slurm user). The task waits with Slurm's words, however long.
WAIT_REFUSALS = {2016, 2050}
REFUSED_SECONDS = 60  # how long another refusal is tried again before the task fails
SILENT_SECONDS = 30  # a cluster that did not answer is left alone this long
LIST_ABOVE = 20  # with more open jobs than this, one job list a pass instead of one call each
# How long a running job's allocation may stay unusable (a node discovery has not found
# yet, a chip still held by an ended replica's lost container) before its task ends.
UNUSABLE_SECONDS = 120
# Slurm's pending reasons, by the sentence Hourglass shows (reason code in portal.reasons).
REASONS = {"Resources": "slurm_resources", "Priority": "slurm_priority",
           "ReqNodeNotAvail": "slurm_nodes_unavailable", "NodeDown": "slurm_nodes_unavailable",
           "Reservation": "slurm_nodes_unavailable", "BeginTime": "slurm_waiting"}
LIMIT_REASONS = ("Partition", "Assoc", "QOS", "MaxJobs", "JobHeldAdmin")


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
        self.deciding = {}
        self.refused = {}  # {task id: since when (monotonic) Slurm refuses its job for now}
        self.unusable = {}  # {task id: since when (monotonic) its allocation is unusable}
        self.silent = {}  # {cluster id: until when (monotonic) it is left alone}

    def run(self, instance, local_url, peer_ports):
        """One pass over every Slurm cluster with open tasks (see the module); whether a job
        just submitted awaits Slurm's decision (the next pass should come soon, not at the
        next tick)."""
        by_cluster = {}
        now = time.monotonic()
        if SlurmCluster.select().exists():  # a Podman-only Hourglass pays one query
            for task in _open_tasks():
                if self.silent.get(task.pool.slurm_cluster_id, 0) <= now:
                    by_cluster.setdefault(task.pool.slurm_cluster, []).append(task)
        waits = {}  # {task id: Reason}, stored at the end in one go
        if by_cluster:
            # A task waits, as on any pool, while its renter's balance does not cover its
            # start or it would take them over the pool's per-user limits.
            needs = inventory.spec_needs()
            short, held = assign.unaffordable(), Held(needs)
            states = _states([t for tasks in by_cluster.values() for t in tasks])
            for cluster, tasks in by_cluster.items():
                pass_ = _Pass(self, cluster, instance, needs, local_url, peer_ports, waits)
                if not pass_.run(tasks, short, held, states):
                    self.silent[cluster.id] = time.monotonic() + SILENT_SECONDS
            assign.store_reasons(waits)
        now, open_ids = time.monotonic(), {t.id for tasks in by_cluster.values() for t in tasks}
        self.silent = {cluster: until for cluster, until in self.silent.items() if until > now}
        self.deciding = {task: until for task, until in self.deciding.items() if until > now}
        self.refused = {task: t for task, t in self.refused.items() if task in open_ids}
        self.unusable = {task: t for task, t in self.unusable.items() if task in open_ids}
        return bool(self.deciding)

    def sweep(self, instance):
        """Cancel the jobs of this instance that no task claims: a task deleted or whose job is
        done, or one whose id was never stored and that no pass adopted. A cluster that
        does not answer is left for the next sweep."""
        for cluster in SlurmCluster.select().order_by(SlurmCluster.id):
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


class _Pass:
    """One pass over one cluster's open tasks. Each task's job is asked for by its id, so
    a pass costs what Hourglass's own tasks cost, however many jobs the cluster runs; the
    whole job list is read only when a task is about to be submitted (a job named after it
    is adopted instead)."""

    def __init__(self, step, cluster, instance, needs, local_url, peer_ports, waits):
        self.step, self.cluster, self.instance = step, cluster, instance
        self.needs, self.local_url, self.peer_ports = needs, local_url, peer_ports
        self.waits = waits
        self.client = step.client_for(cluster, timeout=step.timeout)

    def run(self, tasks, short, held, states):
        """Move each of ``tasks`` on (``states``: {task id: its replicas' states}); False
        when the cluster stopped answering (the rest wait, saying so), else True."""
        self.short, self.states, self._named = short, states, None
        with_job = [task.slurm_job for task in tasks if task.slurm_job is not None]
        self._listed = None
        try:
            if len(with_job) > LIST_ABOVE:  # one list costs less than a call each
                self._listed = {}
                for job in self.client.jobs():
                    self._listed.setdefault(job.het_job_id or job.id, []).append(job)
        except SlurmError as error:
            self._silent(tasks, error)
            return False
        for number, task in enumerate(tasks):
            try:
                if task.slurm_job is None and task.id in short:
                    self._wait(task, short[task.id])
                elif task.slurm_job is None and (over := held.over(task)) is not None:
                    self._wait(task, over)
                else:
                    self._follow(task)
            except SlurmRefused as error:  # about this task's job alone: the others go on
                log.warning("Slurm refused a call about task %s's job: %s", task.id, error)
                self._wait(task, Reason("slurm_refused_for_now", {"detail": str(error)}))
            except SlurmError as error:  # no answer: the rest wait for a later pass
                self._silent(tasks[number:], error)
                return False
        return True

    def named(self):
        """{task id: its job's id} of the jobs of this instance that run or wait, read once
        a pass, when first needed."""
        if self._named is None:
            self._named = {task_of(self.instance, job.name): job.id
                           for job in self.client.jobs() if job.het_offset == 0
                           and (job.state == RUNNING or job.state in WAITING)}
        return self._named

    def _silent(self, tasks, error):
        log.warning("Slurm cluster %r does not answer: %s", self.cluster.name, error)
        for task in tasks:
            self._wait(task, Reason("slurm_silent", {"cluster": self.cluster.name,
                                                     "detail": str(error)}))

    def _wait(self, task, reason):
        if not task.stop_requested:
            self.waits[task.id] = reason

    def _job(self, job_id):
        """The components of job ``job_id`` in offset order ([]: Slurm does not know it)."""
        if self._listed is None:
            return self.client.job(job_id)
        return sorted(self._listed.get(job_id, []), key=lambda job: job.het_offset)

    def _follow(self, task):
        """Move ``task`` on from its job as Slurm shows it now."""
        states = self.states.get(task.id, [])
        live = [s for s in states if s in ("starting", "running")]
        if "pending" not in states and not live:  # every replica ended: let the job go
            if task.slurm_job is not None:
                self.client.cancel(task.slurm_job)
            Task.update(slurm_job_done=True).where(Task.id == task.id).execute()
            return
        if task.slurm_job is None:
            self._submit(task)
            return
        job = self._job(task.slurm_job)
        leader = job[0] if job else None
        deciding = self.step.deciding
        if leader is not None and leader.state in WAITING:
            if leader.reason:  # Slurm has decided it waits: the tick looks again
                deciding.pop(task.id, None)
            if not live:
                self._wait(task, reason_for(leader, task.pool.partition))
            return
        deciding.pop(task.id, None)
        ended = next((c for c in job if c.state != RUNNING), None)
        if leader is not None and ended is None:
            if "pending" in states and task.id in self.short:
                self._give_back(task)
            elif "pending" in states:
                self._start_in(task, job)
            return
        if ended is not None and ended.state == COMPLETING:  # ended, Slurm's why not known
            _end(task, stored("slurm_job_ending", {"job": task.slurm_job}))
        else:  # Slurm ended it (a component of it), or forgot it
            state = ended.state if ended is not None else "gone"
            _end(task, stored("slurm_job_ended", {"job": task.slurm_job, "state": state}))

    def _submit(self, task):
        """Adopt ``task``'s job when one named after it runs or waits (its id never got
        stored), else submit one, one component per replica, and store its id. A refusal
        that no retry changes fails the task; one that says "not now" keeps it waiting; another
        is tried again for ``REFUSED_SECONDS``."""
        step = self.step
        job_id = self.named().get(task.id)
        if job_id is None:
            try:
                job_id = self.client.submit(components(task, self.instance, self.needs), SCRIPT)
            except (SlurmRefused, ValueError) as error:  # ValueError: a kind without GRES
                since = step.refused.setdefault(task.id, time.monotonic())
                errno = getattr(error, "errno", None)
                if errno not in WAIT_REFUSALS and (
                        isinstance(error, ValueError) or errno in PERMANENT_REFUSALS
                        or time.monotonic() - since >= REFUSED_SECONDS):
                    step.refused.pop(task.id, None)
                    _end(task, stored("slurm_refused", {"detail": str(error)}))
                else:
                    self._wait(task, Reason("slurm_refused_for_now", {"detail": str(error)}))
                return
            log.info("task %s submitted to Slurm cluster %r as job %s", task.id,
                     self.cluster.name, job_id)
        else:
            log.info("task %s adopts Slurm job %s, named after it", task.id, job_id)
        step.refused.pop(task.id, None)
        Task.update(slurm_job=job_id).where(
            (Task.id == task.id) & Task.slurm_job.is_null()).execute()
        self._wait(task, Reason("slurm_submitting", {"partition": task.pool.partition}))
        step.deciding[task.id] = time.monotonic() + DECIDING_SECONDS

    def _give_back(self, task):
        """Slurm started the job of a task whose renter's balance no longer covers its start
        (it waited in Slurm meanwhile): cancel the job and wait as on any pool, saying so; a
        new job is submitted once the balance covers it. The id goes first: a crash in
        between leaves a job no task claims, which the sweep cancels."""
        Task.update(slurm_job=None).where(
            (Task.id == task.id) & (Task.slurm_job == task.slurm_job)).execute()
        self.step.unusable.pop(task.id, None)
        self.client.cancel(task.slurm_job)
        log.info("task %s: Slurm job %s cancelled, its renter's balance no longer covers its "
                 "start", task.id, task.slurm_job)
        self._wait(task, self.short[task.id])

    def _start_in(self, task, job):
        """Store the allocation of ``task``'s running job (the start step starts its replicas
        there); one that stays unusable for ``UNUSABLE_SECONDS`` ends the task, and its job
        with it."""
        unusable = self.step.unusable
        node_ids = dict(Node.select(Node.name, Node.id).where(
            Node.slurm_cluster == self.cluster).tuples())
        try:
            placed = assignments(task, job, self.cluster, node_ids, self.needs)
            if placed:
                why = assign.store_assignments({task.id: placed}, self.local_url,
                                               self.peer_ports).get(task.id)
                if why is not None:
                    raise Unusable(why)
        except Unusable as why:
            since = unusable.setdefault(task.id, time.monotonic())
            if time.monotonic() - since < UNUSABLE_SECONDS:
                self._wait(task, Reason("slurm_unusable", {"detail": str(why)}))
                return
            _end(task, stored("slurm_unusable", {"detail": str(why)}))
        unusable.pop(task.id, None)


def _open_tasks():
    """The tasks of Slurm pools (with their pool and cluster) with something left to do:
    waiting ones, and those whose job is not done."""
    waiting = Replica.select(Replica.task).where(Replica.state == "pending")
    return list(Task.select(Task, Pool, SlurmCluster).join(Pool).join(SlurmCluster).where(
        ~Task.slurm_job_done
        & (Task.slurm_job.is_null(False)
           | (Task.id.in_(waiting) & ~Task.stop_requested & ~Task.deleted)))
        .order_by(Task.id))


def _states(tasks):
    """{task id: [its replicas' states]} of ``tasks``, in one query."""
    states = {}
    for task_id, state in (Replica.select(Replica.task, Replica.state)
                           .where(Replica.task.in_([t.id for t in tasks])).tuples()):
        states.setdefault(task_id, []).append(state)
    return states


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
