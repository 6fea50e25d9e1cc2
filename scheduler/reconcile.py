"""The leader's work on replicas, one pass per tick: stop, place, start, follow, clean up.

Each pass makes the engine match the database and the database match the engine. The
steps live in their own modules (``assign``, ``start``, ``follow``, ``sweep``); this one
holds what they share (a backend per node, the thread pool of engine calls, the
instance id) and runs them in order, along with the short ones: moving work off
draining nodes, stops, releasing lost replicas' chips, idle culling and zero-balance
stops.

Engine calls run in a thread pool, outside any transaction; the results are
written back by the pass's own thread. Each step of a pass stands alone: a node
that does not answer, a container whose inspect fails, or a step that raises
stays with its node, replica or step, and metering, zero-balance stops and
clean-up still run on every tick.
"""

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from peewee import JOIN

from portal import ledger, settings
from portal.models import Node, Replica, ReplicaChip, Task, User, utcnow
from portal.reasons import BALANCE_EXHAUSTED
from portal.task_input import TaskError
from portal.tasks import move, request_stop
from scheduler import assign, culling, follow, run_limits, start, sweep
from scheduler.notebook_starts import NotebookStarts
from scheduler.podman import PodmanBackend
from scheduler.slurm_jobs import SlurmJobs
from scheduler.transitions import release_chips

log = logging.getLogger(__name__)

PEER_PORTS = range(30000, 32768)  # node ports published for tasks that span nodes


class Reconciler:
    """``host_root`` is where the local node's host paths live (HOURGLASS_HOST_ROOT);
    ``local_url`` says which node is local. ``grace`` is the SIGTERM-to-SIGKILL wait
    of a stop, in seconds; a replica on a node unreachable for ``lost_after`` is lost.
    ``data_root`` is the portal's data folder (HOURGLASS_DATA), where notebooks' /code and
    the algorithm and dataset versions are; without one, notebooks and tasks with versions
    fail to start. ``peer_ports`` are the node
    ports given to replicas of tasks that span nodes (HOURGLASS_PEER_PORTS). Every
    ``sweep_seconds`` a pass removes what no live replica claims (``sweep``). Each engine
    call has ``engine_timeout`` seconds; ``threads`` runs them, ``workers`` at once.
    ``culling_minute`` is how long a minute of a pool's idle culling time lasts,
    ``run_limit_minute`` one of a maximum run time. ``timings`` (a
    ``portal.metrics.Timings``, or None) gets replicas' waits and notebooks' starts."""

    def __init__(self, local_url, host_root=Path("/"), grace=10, lost_after=60, workers=16,
                 data_root=None, peer_ports=PEER_PORTS, sweep_seconds=60, engine_timeout=5,
                 culling_minute=culling.MINUTE, run_limit_minute=run_limits.MINUTE,
                 timings=None):
        self.local_url = local_url
        self.timings = timings
        self.notebook_starts = NotebookStarts(timings and timings.notebook_start)
        self.culling_minute = culling_minute
        self.run_limit_minute = run_limit_minute
        self.engine_timeout = engine_timeout
        self.sweep_seconds = sweep_seconds
        self._swept_at = -math.inf
        self.peer_ports = peer_ports
        self.host_root = Path(host_root)
        self.data_root = Path(data_root) if data_root is not None else None
        self.grace = grace
        self.lost_after = timedelta(seconds=lost_after)
        self.threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._backends = {}
        self._silent_nodes = set()  # nodes whose engine did not answer this pass
        self.failed_steps = []  # the steps of the last pass that raised
        self.more_to_start = False  # the last pass left placed replicas for the next one
        self._stopping = set()
        self._instance = None
        self.slurm_jobs = SlurmJobs(timeout=engine_timeout)
        self._slurm_deciding = False  # a Slurm job just submitted awaits Slurm's decision

    @property
    def instance(self):
        """The database's instance id, in every container and network name (read once)."""
        if self._instance is None:
            self._instance = settings.instance_id()
        return self._instance

    def backend(self, node):
        """The backend of ``node`` (a Node row), one per node URL."""
        if node.url not in self._backends:
            self._backends[node.url] = PodmanBackend(node.url, self.engine_timeout)
        return self._backends[node.url]

    def run(self):
        """One pass. Call with a database connection open (the scheduler's tick does).

        Each step runs whatever the steps before it did: one that raises is logged and
        the pass goes on, so metering, zero-balance stops and clean-up happen every tick.
        ``failed_steps`` names the steps of this pass that failed."""
        self.failed_steps = []
        notebooks = self.notebook_starts  # the runs waiting before, the runs running after
        for step in (notebooks.note_waiting, self.drain, self.stop_requested, self.place,
                     self.place_slurm, self.start_placed, self.refresh, notebooks.await_jupyter,
                     self.release_lost, self.cull_idle, self.stop_overdue, ledger.meter,
                     self.stop_exhausted, self.clean_up, self.sweep):
            try:
                step()
            except Exception:
                log.exception("scheduler step %s failed; the pass goes on", step.__name__)
                self.failed_steps.append(step.__name__)

    def place(self):
        """Plan this pass's placement and store it (``scheduler.assign``)."""
        chosen = assign.plan()
        if chosen is not None:
            assign.apply(chosen, self.local_url, self.peer_ports)

    def place_slurm(self):
        """Run the tasks of Slurm pools as Slurm jobs (``scheduler.slurm_jobs``): submit,
        wait with Slurm's reason, store the allocation for ``start_placed``, cancel."""
        self._slurm_deciding = self.slurm_jobs.run(self.instance, self.local_url,
                                                   self.peer_ports)

    def start_placed(self):
        """Start the containers of placed replicas (``scheduler.start``); ``more_to_start``
        asks for the next pass at once when some are left for it, or a Slurm job just
        submitted may start any moment."""
        self.more_to_start = start.start_placed(
            self.backend, self.threads, self.instance, self.local_url, self.host_root,
            self.data_root, self.timings and self.timings.queue_wait) or self._slurm_deciding

    def refresh(self):
        """Follow every replica believed starting or running (``scheduler.follow``)."""
        self._silent_nodes = set()
        self._silent_nodes = follow.refresh(self.backend, self.threads, self.instance,
                                            self.lost_after)

    def release_lost(self):
        """Free the chips of lost replicas once their containers are confirmed gone.

        A replica lost because its node stopped answering may still run there. When
        the node answers again its container is killed (it was billed up to when it was
        last seen alive); the chips are released once the engine says it stopped or is
        gone, or at once when the node was removed.
        """
        holding = ReplicaChip.select(ReplicaChip.replica)
        lost = list(Replica.select(Replica, Node).join(Node, JOIN.LEFT_OUTER)
                    .where((Replica.state == "lost") & Replica.id.in_(holding)))
        free = [r.id for r in lost if r.node_id is None or not r.container]
        # Not on a node that did not answer this pass or the last discovery: not yet.
        asking = [r for r in lost if r.id not in free and r.node.ready
                  and r.node_id not in self._silent_nodes]
        stops = {r.id: self.threads.submit(self._kill, r) for r in asking}
        free += [rid for rid, future in stops.items() if future.result()]
        if free:
            release_chips(free)

    def _kill(self, replica):
        try:
            self.backend(replica.node).stop(replica.container, 0)
            return True
        except Exception as error:
            log.info("lost replica %s still unconfirmed on %s: %s", replica.id,
                     replica.node.name, error)
            return False

    def cull_idle(self):
        """Stop notebook runs idle longer than their pool's culling time (``culling``)."""
        if culling.cull(utcnow(), culling.fetch_with(self.threads), self.culling_minute):
            self.stop_requested()

    def stop_overdue(self):
        """Stop tasks past their maximum run time ("max run time reached", ``run_limits``)."""
        if run_limits.stop_overdue(minute=self.run_limit_minute):
            self.stop_requested()

    def stop_exhausted(self):
        """Stop the tasks of renters whose balance ran out ("balance exhausted") at once."""
        broke = (Task.select().join(User)
                 .where((User.balance <= 0) & ~Task.stop_requested
                        & Task.id.in_(Replica.select(Replica.task)
                                      .where(Replica.state.in_(("starting", "running"))))))
        stopped = False
        for task in broke:
            request_stop(task, BALANCE_EXHAUSTED)
            log.info("task %s stopped: its renter's balance is exhausted", task.id)
            stopped = True
        if stopped:
            self.stop_requested()

    def drain(self):
        """Move the work off draining nodes: every task with a replica starting or running on
        one stops, and a training task runs again as a new task elsewhere (``move``)."""
        live_on_draining = (Replica.select(Replica.task).join(Node)
                            .where(Node.draining & Replica.state.in_(("starting", "running"))))
        for task in Task.select().where(~Task.stop_requested & Task.id.in_(live_on_draining)):
            try:
                new = move(task)
            except TaskError:  # it ended meanwhile
                continue
            log.info("task %s moved off a draining node%s", task.id,
                     f": runs again as task {new.id}" if new else "")

    def stop_requested(self):
        """Send SIGTERM (then SIGKILL after ``grace``) to replicas of tasks asked to stop.
        Stops run in the background; ``refresh`` sees the containers exit."""
        replicas = (Replica.select(Replica, Node).join(Node).switch(Replica).join(Task)
                    .where(Task.stop_requested & Replica.state.in_(("starting", "running"))
                           & (Replica.container != "")))
        for replica in replicas:
            if replica.id not in self._stopping:
                self._stopping.add(replica.id)
                self.threads.submit(self._stop, replica)

    def _stop(self, replica):
        try:
            self.backend(replica.node).stop(replica.container, self.grace)
        except Exception as error:
            log.warning("stopping %s failed: %s", replica.container, error)
        finally:
            self._stopping.discard(replica.id)

    def clean_up(self):
        """Remove the containers and networks of deleted tasks (``scheduler.sweep``)."""
        sweep.clean_up(self.backend, self.threads, self.instance)

    def sweep(self):
        """Every ``sweep_seconds``, on every enabled node: remove this instance's containers
        and networks that nothing claims (``scheduler.sweep``), and cancel its Slurm jobs that
        no task claims. A removal that fails is tried again at the next sweep."""
        if time.monotonic() - self._swept_at < self.sweep_seconds:
            return
        self._swept_at = time.monotonic()
        sweep.sweep_orphans(self.backend, self.threads, self.instance)
        self.slurm_jobs.sweep(self.instance)
