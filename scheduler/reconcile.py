"""The leader's work on replicas, one pass per tick: stop, place, start, follow, clean up.

Each pass makes the engine match the database and the database match the
engine. Nothing is started twice: a replica's container name is derived from
its id, so after a crash a half-started replica finds its container instead
of making another, and ``refresh`` adopts whatever still runs. Start and end
times are the container's own StartedAt / FinishedAt (integer nanoseconds).

Engine calls run in a thread pool, outside any transaction; the results are
written back by the pass's own thread. Each step of a pass stands alone: a node
that does not answer, a container whose inspect fails, or a step that raises
stays with its node, replica or step, and metering, zero-balance stops and
clean-up still run on every tick.

"Last seen running" is the moment *before* the engine was asked and said
``running``: the container was alive then, so a replica is never billed past
its container's real end (a ``stopping`` container proves nothing).
"""

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from peewee import JOIN, IntegrityError, chunked

from portal import ledger, notebooks, settings
from portal.db import Prepared, database
from portal.models import (
    REPLICA_ENDED,
    Node,
    NodeChip,
    Notebook,
    Replica,
    ReplicaChip,
    ReplicaEvent,
    ResourceSpec,
    Subtask,
    Task,
    User,
    utcnow,
)
from portal.money import format_amount
from portal.reasons import stored
from portal.tasks import (
    BALANCE_EXHAUSTED,
    STOPPED_BY_YOU,
    TaskError,
    move,
    refresh_state,
    request_stop,
)
from scheduler import culling, inventory, placement
from scheduler.accelerators import Chip
from scheduler.backend import (
    INSTANCE_LABEL,
    TASK_LABEL,
    BackendError,
    ContainerExists,
    ContainerSpec,
    EngineBusy,
    NodeUnreachable,
    StartFailed,
    attach_chips,
    container_name,
    network_name,
)
from scheduler.podman import PodmanBackend

log = logging.getLogger(__name__)

PIDS_LIMIT = 4096
JUPYTER_PORT = 8888
PEER_PORTS = range(30000, 32768)  # node ports published for tasks that span nodes
START_ATTEMPTS = 5  # passes a start may find its node not answering before the replica fails
STARTS_PER_NODE = 32  # starts per node in one pass: a burst takes a few short passes
LIVE = ("pending", "starting", "running")


def hostname(subtask, replica):
    """A replica's name on its task's network, e.g. ``worker-1``."""
    return f"{subtask.role}-{replica.index}"


def _seen(replica):
    """When ``replica`` was last seen alive, as its reasons say it."""
    return f"{replica.last_seen_at:%Y-%m-%d %H:%M:%S} UTC" if replica.last_seen_at else "-"


def transition(replica, state, reason="", from_state=None, keep_chips=False, **fields):
    """Move ``replica`` to ``state`` (recording the event) unless it already ended; with
    ``from_state``, only from that state (compare-and-set). Returns whether it moved.

    An ended replica lets go of its chips, unless ``keep_chips``: a replica lost with its
    node may still run there, so it holds them until its container is confirmed gone
    (``Reconciler.release_lost``)."""
    current = (Replica.state == from_state) if from_state else Replica.state.not_in(REPLICA_ENDED)
    moved = (Replica.update(state=state, reason=reason[:512], **fields)
             .where((Replica.id == replica.id) & current).execute())
    if moved:
        ReplicaEvent.create(replica=replica.id, state=state, reason=reason[:512])
        if state in REPLICA_ENDED and not keep_chips:
            release_chips([replica.id])
    return moved


def release_chips(replica_ids):
    """Let go of the chips the replicas ``replica_ids`` hold."""
    ReplicaChip.delete().where(ReplicaChip.replica.in_(list(replica_ids))).execute()


class StalePlan(Exception):
    """A task's placement no longer matches the database; nothing of it is stored."""


class NoPeerPort(StalePlan):
    """Every port of ``peer_ports`` is held at a node address: the task waits, saying so."""

    def __init__(self, address):
        super().__init__(f"no peer port free at {address}")
        self.address = address


def jupyter_argv(replica_id, port=JUPYTER_PORT):
    """How a notebook replica's container starts JupyterLab: on every address of its task's
    network, on ``port``, under ``/nb/<replica id>/`` (where the notebook proxy forwards),
    in /code. The token comes from ``JUPYTER_TOKEN``, never from an argument (``ps`` shows
    those). ``--allow-root``: a renter's own image may run as root (ours runs as uid 1000)."""
    return ("jupyter-lab", "--ip=0.0.0.0", f"--port={port}", "--no-browser",
            f"--ServerApp.base_url=/nb/{replica_id}/", "--ServerApp.root_dir=/code",
            "--allow-root")


# Why each task with a pending replica waits, as stored: read on every pass (prepared).
_WAITING_REASONS = Prepared(lambda: Task.select(Task.id, Task.reason).where(
    Task.id.in_(Replica.select(Replica.task).where(Replica.state == "pending"))))


class Reconciler:
    """``host_root`` is where the local node's host paths live (HOURGLASS_HOST_ROOT);
    ``local_url`` says which node is local. ``grace`` is the SIGTERM-to-SIGKILL wait
    of a stop, in seconds; a replica on a node unreachable for ``lost_after`` is lost.
    ``data_root`` is the portal's data folder (HOURGLASS_DATA), where notebooks' /code and
    /dataset folders are; without one, notebooks fail to start. ``peer_ports`` are the node
    ports given to replicas of tasks that span nodes (HOURGLASS_PEER_PORTS). Every
    ``sweep_seconds`` a pass removes what no live replica claims (``sweep``). Each engine
    call has ``engine_timeout`` seconds."""

    def __init__(self, local_url, host_root=Path("/"), grace=10, lost_after=60, workers=16,
                 data_root=None, peer_ports=PEER_PORTS, sweep_seconds=60, engine_timeout=5):
        self.local_url = local_url
        self.engine_timeout = engine_timeout
        self.sweep_seconds = sweep_seconds
        self._swept_at = -math.inf
        self.peer_ports = peer_ports
        self.host_root = Path(host_root)
        self.data_root = Path(data_root) if data_root is not None else None
        self.grace = grace
        self.lost_after = timedelta(seconds=lost_after)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._backends = {}
        self._silent_nodes = set()  # nodes whose engine did not answer this pass
        self.failed_steps = []  # the steps of the last pass that raised
        self.more_to_start = False  # the last pass left placed replicas for the next one
        self._stopping = set()
        self._instance = None

    @property
    def instance(self):
        """The database's instance id, in every container and network name (read once)."""
        if self._instance is None:
            self._instance = settings.instance_id()
        return self._instance

    def backend(self, node):
        if node.url not in self._backends:
            self._backends[node.url] = PodmanBackend(node.url, self.engine_timeout)
        return self._backends[node.url]

    def run(self):
        """One pass. Call with a database connection open (the scheduler's tick does).

        Each step runs whatever the steps before it did: one that raises is logged and
        the pass goes on, so metering, zero-balance stops and clean-up happen every tick.
        ``failed_steps`` names the steps of this pass that failed."""
        self.failed_steps = []
        for step in (self.drain, self.stop_requested, self.place, self.start_placed,
                     self.refresh, self.release_lost, self.cull_idle, ledger.meter,
                     self.stop_exhausted, self.clean_up, self.sweep):
            try:
                step()
            except Exception:
                log.exception("scheduler step %s failed; the pass goes on", step.__name__)
                self.failed_steps.append(step.__name__)

    # --- placing -----------------------------------------------------------------------

    def place(self):
        """Plan this pass's placement and store it."""
        plan = self.plan()
        if plan is not None:
            self.apply(plan)

    def plan(self):
        """The placement of every waiting task over a fresh snapshot; None when nothing
        waits. It only reads: ``apply`` stores it."""
        needs = inventory.spec_needs()
        tasks = inventory.pending_tasks(needs)
        if not tasks:
            return None
        short = self._unaffordable()
        usage, limits = inventory.usage_and_limits(needs)
        plan = placement.place(inventory.node_states(needs),
                               [t for t in tasks if t.task_id not in short], now=utcnow(),
                               usage=usage, limits=limits, pool_names=inventory.pool_names())
        plan.pending.update(short)
        return plan

    @staticmethod
    def _unaffordable():
        """{task id: Reason} for waiting tasks whose renter's balance does not cover the
        miner's minimum period of them: they wait, holding nothing."""
        costs = inventory.start_costs()
        balances = inventory.balances({user for user, _ in costs.values()})
        minutes = int(settings.get("min_start_minutes"))
        currency = settings.get("currency")
        short = {}
        for task_id, (user, per_hour) in costs.items():
            needed = ledger.minimum_for(per_hour, minutes)
            if balances.get(user, 0) < needed:
                short[task_id] = placement.Reason("balance_low", {
                    "balance": format_amount(balances.get(user, 0)), "minutes": minutes,
                    "needed": format_amount(needed), "currency": currency})
        return short

    def apply(self, plan):
        """Store ``plan``: each task in one transaction, all of its replicas or none.

        The snapshot may be stale by now. A chip taken meanwhile (the unique
        ``ReplicaChip.chip``), a chip or node gone, or a replica that left ``pending``
        (its renter stopped the task, which the portal does at once) undoes that task's
        placement; the next pass plans again. So a chip is never held by a replica that
        will not start.
        """
        if plan.assignments:
            self._store_assignments(plan.assignments)
        if plan.pending:
            self._store_reasons(plan.pending)

    def _store_assignments(self, by_task):
        """Store the placements ``{task id: [Assignment]}`` (see ``apply``)."""
        chip_ids = {(n, k, i): cid for cid, n, k, i in NodeChip.select(
            NodeChip.id, NodeChip.node, NodeChip.kind, NodeChip.index).where(
            NodeChip.present).tuples()}
        names, addresses, local = {}, {}, set()
        for node_id, name, address, url in Node.select(Node.id, Node.name, Node.address,
                                                       Node.url).tuples():
            names[node_id], addresses[node_id] = name, address
            if url == self.local_url:
                local.add(node_id)
        placed = [a.replica_key for assignments in by_task.values() for a in assignments]
        prices = dict(Replica.select(Replica.id, ResourceSpec.price_per_hour).join(Subtask)
                      .join(ResourceSpec).where(Replica.id.in_(placed)).tuples())
        ports = self._ports_in_use()
        notebooks = {task_id for (task_id,) in Task.select(Task.id).where(
            Task.id.in_(list(by_task)) & (Task.kind == "notebook")).tuples()}
        for task_id, assignments in by_task.items():
            spans_nodes = len({a.node_id for a in assignments}) > 1
            try:
                with database.atomic():
                    for a in assignments:
                        # A port for peers on other nodes, or for the notebook proxy to
                        # reach JupyterLab on a node that is not this host's own.
                        published = spans_nodes or (task_id in notebooks
                                                    and a.node_id not in local)
                        port = (self._free_port(ports, addresses.get(a.node_id, ""))
                                if published else None)
                        if not transition(Replica(id=a.replica_key), "starting",
                                          f"placed on {names.get(a.node_id, a.node_id)}",
                                          from_state="pending", node=a.node_id,
                                          price_per_hour=prices[a.replica_key],
                                          peer_port=port):
                            raise StalePlan(f"replica {a.replica_key} is no longer pending")
                        for kind, indices in a.chips.items():
                            for slot, index in enumerate(indices):
                                chip = chip_ids.get((a.node_id, kind, index))
                                if chip is None:
                                    raise StalePlan(f"chip {kind} {index} is gone")
                                ReplicaChip.create(replica=a.replica_key, slot=slot, chip=chip)
                    Task.update(reason="").where(Task.id == task_id).execute()
            except IntegrityError:  # a chip was taken meanwhile: the next pass places again
                log.warning("placement of task %s lost a race; retrying next pass", task_id)
                continue
            except StalePlan as why:
                log.info("placement of task %s not stored (%s)", task_id, why)
                if isinstance(why, NoPeerPort):
                    Task.update(reason=stored("no_peer_port", {"address": why.address})).where(
                        Task.id == task_id).execute()
                continue
            refresh_state(Task(id=task_id))

    @staticmethod
    def _store_reasons(pending):
        """Why each task waits (``{task id: Reason}``), as ``Task.reason``: one statement
        per reason (most waiting tasks share one), and only for the rows whose reason
        changed, so a pass over many waiting tasks takes the write lock, which submissions
        need too, only when there is something to write."""
        current = dict(_WAITING_REASONS.rows())
        changed = {}
        for task_id, reason in pending.items():
            text = stored(reason.code, reason.params)[:512]
            if current.get(task_id) != text:
                changed.setdefault(text, []).append(task_id)
        for text, task_ids in changed.items():
            for ids in chunked(task_ids, 500):  # under any database's limit on parameters
                Task.update(reason=text).where(Task.id.in_(ids)).execute()

    @staticmethod
    def _ports_in_use():
        """{node address: the peer ports held there by starting and running replicas}. By
        address, not node: two Podman services on one host share its ports."""
        used = {}
        for address, port in (Replica.select(Node.address, Replica.peer_port).join(Node)
                              .where(Replica.peer_port.is_null(False)
                                     & Replica.state.in_(("starting", "running"))).tuples()):
            used.setdefault(address, set()).add(port)
        return used

    def _free_port(self, used, address):
        """The lowest peer port free at ``address``, now taken in ``used``; StalePlan when
        none is left (the task waits for the next pass)."""
        taken = used.setdefault(address, set())
        port = next((p for p in self.peer_ports if p not in taken), None)
        if port is None:
            raise NoPeerPort(address)
        taken.add(port)
        return port

    # --- starting ----------------------------------------------------------------------

    def start_placed(self):
        """Create and start the containers of placed replicas, at once, up to
        ``STARTS_PER_NODE`` per node: the pass stays short whatever the burst, and
        ``more_to_start`` asks for the next pass at once."""
        replicas = list(Replica.select(Replica, Task, Subtask, Node)
                        .join(Task).switch(Replica).join(Subtask).switch(Replica)
                        .join(Node, JOIN.LEFT_OUTER)
                        .where((Replica.state == "starting") & (Replica.container == ""))
                        .order_by(Replica.id))
        batch, per_node = [], {}
        for replica in replicas:
            per_node[replica.node_id] = per_node.get(replica.node_id, 0) + 1
            if per_node[replica.node_id] <= STARTS_PER_NODE:
                batch.append(replica)
        self.more_to_start = len(batch) < len(replicas)
        replicas = batch
        if not replicas:
            return
        stopped = [r for r in replicas if r.task.stop_requested or r.task.deleted]
        for replica in stopped:
            transition(replica, "stopped", "stopped before it started")
            refresh_state(replica.task)
        orphans = [r for r in replicas if r not in stopped and r.node_id is None]
        for replica in orphans:
            transition(replica, "lost", "its node was removed before it started")
            refresh_state(replica.task)
        starting = [r for r in replicas if r not in stopped and r not in orphans]
        jobs = {}
        for r, spec in zip(starting, self._specs(starting), strict=True):
            if isinstance(spec, StartFailed):  # a notebook that cannot be built
                transition(r, "failed", f"could not start: {spec}")
                refresh_state(r.task)
            else:
                jobs[r.id] = (r, spec)
        futures = {rid: self.pool.submit(self._start, r.node, spec)
                   for rid, (r, spec) in jobs.items()}
        for rid, future in futures.items():
            replica = jobs[rid][0]
            outcome, detail = future.result()
            if outcome == "queued":  # our own queue of calls to the node was too long
                continue
            if outcome == "retry":
                attempts = replica.start_attempts + 1
                if attempts < START_ATTEMPTS:
                    Replica.update(start_attempts=attempts).where(Replica.id == rid).execute()
                    continue
                transition(replica, "failed", f"could not start: node {replica.node.name} did "
                           f"not answer {attempts} tries ({detail})")
            elif outcome == "failed":
                transition(replica, "failed", f"could not start: {detail}")
            else:
                state, seen = detail
                Replica.update(container=container_name(self.instance, replica.id),
                               last_seen_at=seen).where(Replica.id == rid).execute()
                replica.last_seen_at = seen
                self._follow(replica, state, seen)
            refresh_state(replica.task)

    def _start(self, node, spec):
        """Start one replica's container: ("started", (its state, when it was asked for)),
        ("failed", Podman's message), ("retry", why) when the node did not answer, or
        ("queued", None) when the calls to the node waiting before it took too long."""
        backend = self.backend(node)
        try:
            backend.ensure_network(spec.network, {INSTANCE_LABEL: spec.instance,
                                                  TASK_LABEL: str(spec.task)})
            try:
                backend.start(spec)
            except (ContainerExists, NodeUnreachable) as error:
                # Made before a crash, or no answer to the create or the start, which may
                # have happened all the same: look it up by name before deciding anything.
                found = backend.inspect(spec.name)
                if found is None and isinstance(error, NodeUnreachable):
                    raise
                if found is None or found.status == "created":
                    # Made but never started: it never ran, so making it again starts
                    # nothing twice.
                    if found is not None:
                        backend.remove(spec.name)
                    backend.start(spec)
            seen = utcnow()
            return "started", (backend.inspect(spec.name), seen)
        except StartFailed as error:
            return "failed", str(error)
        except EngineBusy as error:
            log.info("starting %s on %s waits: %s", spec.name, node.name, error)
            return "queued", None
        except Exception as error:  # node trouble: the replica stays starting, retried
            log.warning("starting %s on %s failed: %s", spec.name, node.name, error)
            return "retry", str(error)[:200]

    def _specs(self, replicas):
        """The containers of ``replicas``, in order: their task's image, argv and env, their
        spec's limits, their chips renumbered from 0, their peers' names; for a notebook's
        replica, JupyterLab with its folders (or the StartFailed saying why not). Four
        queries for all of them, however many replicas and tasks."""
        specs = {spec.id: spec for spec in ResourceSpec.select().where(
            ResourceSpec.id.in_({r.subtask.spec_id for r in replicas}))}
        peers = {}
        for peer in (Replica.select(Replica, Subtask, Node).join(Subtask).switch(Replica)
                     .join(Node, JOIN.LEFT_OUTER)
                     .where(Replica.task.in_({r.task_id for r in replicas}))
                     .order_by(Subtask.id, Replica.index)):
            peers.setdefault(peer.task_id, []).append(peer)
        chips = {}
        for row in (NodeChip.select(NodeChip, ReplicaChip.replica).join(ReplicaChip)
                    .where(ReplicaChip.replica.in_([r.id for r in replicas]))
                    .order_by(NodeChip.kind, ReplicaChip.slot)):
            chips.setdefault(row.replicachip.replica_id, []).append(
                Chip(row.kind, row.index, row.device, row.card, row.driver))
        labs = {nb.id: nb for nb in Notebook.select().where(Notebook.id.in_(
            {r.task.notebook_id for r in replicas if r.task.kind == "notebook"}))}
        out = []
        for r in replicas:
            spec = self._spec(r, specs[r.subtask.spec_id], peers[r.task_id], chips.get(r.id, []))
            if r.task.kind == "notebook":
                try:
                    spec = self._notebook(spec, r, labs.get(r.task.notebook_id))
                except StartFailed as why:
                    spec = why
            out.append(spec)
        return out

    def _notebook(self, container, replica, notebook):
        """``container`` made a notebook's: JupyterLab with the run's token in its
        environment, working in /code, the notebook's folders bound. Raises StartFailed."""
        if notebook is None:
            raise StartFailed("its notebook is gone")
        if self.data_root is None:
            raise StartFailed("Hourglass has no data folder for notebooks (HOURGLASS_DATA)")
        try:
            binds = notebooks.mounts(self.data_root, notebook)
        except ValueError as error:
            raise StartFailed(str(error)) from None
        return replace(container, argv=jupyter_argv(replica.id, replica.peer_port or JUPYTER_PORT),
                       env={**container.env, "JUPYTER_TOKEN": replica.task.secret},
                       working_dir="/code", mounts=(*container.mounts, *binds))

    def _spec(self, replica, spec, everyone, chips):
        """A replica's container. Its peers are names on its task's network when the task
        runs on one node; when it spans nodes, each replica also has a node port published
        (``HOURGLASS_PORT``, the same number inside) and its peers are ``address:port``."""
        task, subtask = replica.task, replica.subtask
        rank = [r.id for r in everyone].index(replica.id)
        ports, own = (), {}
        if replica.peer_port:
            peers = [f"{r.node.address if r.node_id else ''}:{r.peer_port}" for r in everyone]
            ports, own = (replica.peer_port,), {"HOURGLASS_PORT": str(replica.peer_port)}
        else:
            peers = [hostname(r.subtask, r) for r in everyone]
        env = {**json.loads(task.env),
               "HOURGLASS_TASK_ID": str(task.id), "HOURGLASS_ROLE": subtask.role,
               "HOURGLASS_REPLICA_INDEX": str(replica.index),
               "HOURGLASS_PEERS": ",".join(peers), **own,
               "WORLD_SIZE": str(len(everyone)), "RANK": str(rank)}
        name = hostname(subtask, replica)
        container = ContainerSpec(
            instance=self.instance, replica=replica.id, task=task.id, subtask=subtask.id,
            user=task.user_id,
            image=task.image, argv=tuple(json.loads(task.argv)), env=env,
            cpu_millis=spec.cpu_millis, memory_mib=spec.memory_mib, pids_limit=PIDS_LIMIT,
            network=network_name(self.instance, task.id), hostname=name, aliases=(name,),
            ports=ports)
        root = self.host_root if replica.node.url == self.local_url else Path("/")
        return attach_chips(container, chips, root) if chips else container

    # --- following ---------------------------------------------------------------------

    def _follow(self, replica, state, seen):
        """Apply what one inspect said about ``replica``'s container; ``seen`` is when the
        engine was asked (a ``running`` answer proves the container was alive then).
        Returns whether the replica changed state."""
        if state is None:  # confirmed gone: its chips are free
            return transition(replica, "lost",
                              f"its container vanished (last seen alive {_seen(replica)})")
        started = state.started.ns if state.started else None
        address = self._address(replica, state)
        if state.status == "running" and replica.state == "starting":
            return transition(replica, "running", "container started", started_ns=started,
                              last_seen_at=seen, **address)
        if state.status == "exited":
            # JupyterLab ends a stop by exiting 0: a notebook asked to stop is stopped.
            if state.exit_code == 0 and not (replica.task.kind == "notebook"
                                             and replica.task.stop_requested):
                end, why = "succeeded", "exited with code 0"
            elif replica.task.stop_requested:
                end, why = "stopped", replica.task.stop_reason or STOPPED_BY_YOU
            else:
                end, why = "failed", f"exited with code {state.exit_code}"
            if state.oom_killed:
                why += " (out of memory)"
            finished = state.finished.ns if state.finished else None
            if started is not None and finished is not None:
                # Podman 4.3 can stamp a container that exits at once as finished a few
                # microseconds before it started: such a run lasted no time at all.
                finished = max(finished, started)
            return transition(replica, end, why, started_ns=started,
                              exit_code=state.exit_code, finished_ns=finished)
        if state.status == "running":
            if address.get("address") == replica.address:
                address = {}
            Replica.update(last_seen_at=seen, **address).where(Replica.id == replica.id
                                                               ).execute()
        # stopping, paused, created: alive or not, nothing proves it; the next pass looks
        return False

    def _address(self, replica, state):
        """``{"address": "IP:port"}`` where a notebook replica's JupyterLab answers: its
        node's address and published port when it has one (another node), else its IP on
        its task's network; {} for other replicas."""
        if replica.task.kind != "notebook":
            return {}
        if replica.peer_port:
            return {"address": f"{replica.node.address}:{replica.peer_port}"}
        ip = state.addresses.get(network_name(self.instance, replica.task_id), "")
        return {"address": f"{ip}:{JUPYTER_PORT}" if ip else ""}

    def refresh(self):
        """Follow every replica believed starting or running (this is also adoption after
        a restart).

        One list of each node's running containers tells which running replicas are still
        alive; only the others (starting, ended, or missing from the list) are inspected one
        by one, for their exact StartedAt and FinishedAt. A node that does not answer, or a
        container whose inspect fails, leaves those replicas as they were this pass; past
        ``lost_after`` without being seen they are lost, billed to when they were last seen
        alive, and keep their chips until their containers are confirmed gone.
        """
        replicas = list(Replica.select(Replica, Task, Node).join(Task).switch(Replica)
                        .join(Node, JOIN.LEFT_OUTER)
                        .where(Replica.state.in_(("starting", "running"))
                               & (Replica.container != "")))
        moved = []  # replicas that changed state: their tasks' states are derived again
        by_node = {}
        for replica in replicas:
            if replica.node_id is None:  # the miner removed its node: nothing to ask
                if transition(replica, "lost",
                              f"its node was removed (last seen alive {_seen(replica)})"):
                    moved.append(replica)
            else:
                by_node.setdefault(replica.node_id, []).append(replica)
        listed = {node_id: self.pool.submit(self._running_on, group[0].node)
                  for node_id, group in by_node.items()}
        alive, ask, silent = {}, [], {}
        self._silent_nodes = set()
        for node_id, group in by_node.items():
            running, seen, error = listed[node_id].result()
            if running is None:
                self._silent_nodes.add(node_id)
            for replica in group:
                if running is None:
                    silent[replica.id] = error
                elif (replica.container in running and replica.state == "running"
                      and replica.started_ns is not None):
                    alive.setdefault(seen, []).append(replica.id)
                else:
                    ask.append(replica)
        for seen, ids in alive.items():  # one UPDATE per node
            Replica.update(last_seen_at=seen).where(Replica.id.in_(ids)).execute()
        inspected = {r.id: self.pool.submit(self._inspect, r) for r in ask}
        for replica in ask:
            state, seen, error = inspected[replica.id].result()
            if error is None:
                if self._follow(replica, state, seen):
                    moved.append(replica)
            else:
                silent[replica.id] = error
        now = utcnow()
        for replica in replicas:
            if replica.id in silent and replica.last_seen_at \
                    and now - replica.last_seen_at > self.lost_after \
                    and transition(replica, "lost", f"node {replica.node.name} not answering "
                                   f"since {replica.last_seen_at:%Y-%m-%d %H:%M:%S} UTC "
                                   f"({silent[replica.id]})", keep_chips=True):
                moved.append(replica)
        for task in {r.task_id: r.task for r in moved}.values():
            refresh_state(task)

    def _running_on(self, node):
        """(the handles of this instance's running containers on ``node``, when the engine was
        asked, None) or (None, None, why) when it did not answer. When the list fails but
        the node answers, an empty set: each replica is then inspected."""
        seen = utcnow()
        try:
            states = self.backend(node).list_ours(self.instance, running_only=True)
        except NodeUnreachable as error:
            return None, None, str(error)[:200]
        except BackendError as error:
            log.warning("listing the containers on %s failed: %s", node.name, error)
            return set(), seen, None
        return {s.handle for s in states if s.status == "running"}, seen, None

    def _inspect(self, replica):
        """(state, when the engine was asked, None) or (None, None, why) on any failure."""
        seen = utcnow()
        try:
            return self.backend(replica.node).inspect(replica.container), seen, None
        except Exception as error:  # a 500, a timeout, a refusal: this replica's alone
            log.warning("inspecting %s on %s failed: %s", replica.container,
                        replica.node.name, error)
            return None, None, str(error)[:200]

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
        stops = {r.id: self.pool.submit(self._kill, r) for r in asking}
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

    # --- stopping and cleaning up ------------------------------------------------------

    def cull_idle(self):
        """Stop notebook runs idle longer than their pool's culling time (``culling``)."""
        if culling.cull(utcnow(), culling.fetch_with(self.pool)):
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
                self.pool.submit(self._stop, replica)

    def _stop(self, replica):
        try:
            self.backend(replica.node).stop(replica.container, self.grace)
        except Exception as error:
            log.warning("stopping %s failed: %s", replica.container, error)
        finally:
            self._stopping.discard(replica.id)

    def clean_up(self):
        """Remove the containers of deleted tasks, then each such task's network."""
        gone = (Replica.select(Replica, Node).join(Node).switch(Replica).join(Task)
                .where(Task.deleted & (Replica.container != "")
                       & Replica.state.in_(REPLICA_ENDED)))
        by_node = {}
        for replica in gone:
            by_node.setdefault((replica.task_id, replica.node), []).append(replica.container)
        for (task_id, node), containers in by_node.items():
            self.pool.submit(self._remove_all, self.backend(node), containers,
                             network_name(self.instance, task_id))
            Replica.update(container="").where(
                (Replica.task == task_id) & (Replica.node == node.id)).execute()

    def _remove_all(self, backend, containers, network):
        for container in containers:
            self._quietly(backend.remove, container)
        self._quietly(backend.remove_network, network)

    @staticmethod
    def _quietly(call, *args):
        try:
            call(*args)
        except Exception as error:
            log.warning("clean-up %s%s failed: %s", call.__name__, args, error)

    def sweep(self):
        """Every ``sweep_seconds``, on every enabled node: remove this instance's containers
        and networks that nothing claims, logging each, so nothing leaks whatever failed
        before (a removal, a create whose answer never came, a task deleted while its node
        was down). A removal that fails is tried again at the next sweep.

        A container is claimed by its replica while that replica is pending, starting or
        running, and after it ended while the container has exited (its logs stay readable)
        until its task is deleted. One that still runs after its replica ended (a lost
        replica's, on a node that answers again) is stopped, not removed, for its logs.
        A task's network is claimed until the task is deleted.
        """
        if time.monotonic() - self._swept_at < self.sweep_seconds:
            return
        self._swept_at = time.monotonic()
        nodes = list(Node.select().where(Node.enabled))
        listings = {node.id: self.pool.submit(self._listing, node) for node in nodes}
        found = {node.id: listings[node.id].result() for node in nodes}
        replica_ids = {c.replica for containers, _ in found.values() for c in containers
                       if c.replica is not None}
        task_ids = {int(labels[TASK_LABEL]) for _, networks in found.values()
                    for labels in networks.values() if labels.get(TASK_LABEL, "").isdigit()}
        replicas = {rid: (state, deleted) for rid, state, deleted in
                    Replica.select(Replica.id, Replica.state, Task.deleted).join(Task)
                    .where(Replica.id.in_(list(replica_ids))).tuples()}
        live_tasks = {tid for (tid,) in Task.select(Task.id).where(
            Task.id.in_(list(task_ids)) & ~Task.deleted).tuples()}
        for node in nodes:
            containers, networks = found[node.id]
            verdicts = {c.handle: _verdict(c, replicas.get(c.replica)) for c in containers}
            nets = [name for name, labels in networks.items()
                    if labels.get(TASK_LABEL, "").isdigit()
                    and int(labels[TASK_LABEL]) not in live_tasks]
            if nets or any(verdicts.values()):
                self.pool.submit(self._sweep_node, node, containers, verdicts, nets)

    def _listing(self, node):
        """([this instance's containers], {network: labels}) on ``node``; empty when it does
        not answer (the next sweep looks again)."""
        try:
            backend = self.backend(node)
            return backend.list_ours(self.instance), backend.list_networks(self.instance)
        except Exception as error:
            log.info("sweep: no listing of %s (%s)", node.name, error)
            return [], {}

    def _sweep_node(self, node, containers, verdicts, networks):
        backend = self.backend(node)
        for container in containers:
            verdict = verdicts[container.handle]
            if verdict == "stop":
                log.info("sweep: stopping container %s on %s: its replica has ended",
                         container.handle, node.name)
                self._quietly(backend.stop, container.handle, 0)
            elif verdict == "remove":
                log.info("sweep: removing container %s (%s) on %s: no replica claims it",
                         container.handle, container.status, node.name)
                self._quietly(backend.remove, container.handle)
        for network in networks:
            log.info("sweep: removing network %s on %s: its task is deleted or unknown",
                     network, node.name)
            self._quietly(backend.remove_network, network)


def _verdict(container, replica):
    """What the sweep does with ``container`` of ``replica`` ((state, task deleted), None:
    no such replica): "" (keep it), "stop" or "remove"."""
    if replica is None or replica[1]:
        return "remove"
    if replica[0] in LIVE or container.status == "exited":
        return ""
    return "stop" if container.status in ("running", "stopping", "paused") else "remove"
