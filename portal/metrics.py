"""``GET /metrics``: Hourglass's state in Prometheus's text format.

The gauges are read from the database when Prometheus scrapes (a custom
collector on a registry of the app's own), so any gunicorn worker answers the
same. Sums of money come from what is kept beside the ledger: ``UsageMonth`` for
charges, the few recharge rows through the ledger's (kind, at) index. Per replica
and per chip readings are the latest samples the leader's sampling job wrote.

The histograms (``Timings``) are what the scheduler observes as it works. Under
``serve`` they use prometheus_client's multiprocess mode (``use_multiprocess``):
each worker writes its observations to files in one folder and any worker's
scrape sums them all. Without it (tests, one process) they are on the app's own
registry.

Only a scraper may read it: a request with ``Authorization: Bearer
<HOURGLASS_METRICS_TOKEN>``, or one from a loopback address while
``HOURGLASS_METRICS_LOOPBACK`` is on. Not behind the login; GET only.
"""

import hmac
import os
import shutil
from datetime import UTC, timedelta
from ipaddress import ip_address
from pathlib import Path

from flask import Blueprint, Response, current_app, request
from peewee import JOIN, fn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

from portal.models import (
    REPLICA_STATES,
    ChipSample,
    LeaderLease,
    LedgerEntry,
    Node,
    NodeChip,
    Pool,
    Replica,
    ReplicaChip,
    ReplicaSample,
    Subtask,
    Task,
    UsageMonth,
    utcnow,
)

bp = Blueprint("metrics", __name__)
MONEY = "in micro-units of the miner's currency (1000000 = 1)"
LEASE = "scheduler"  # the scheduler's lease row (scheduler.lease.LEASE_NAME)
# A replica's or chip's latest sample older than this many sampling periods is stale: it
# gets no gauge (the sampling job no longer reads it).
FRESH_PERIODS = 4
# Where the histograms' values fall: a pass takes milliseconds to seconds; a replica waits
# seconds for a free node, or hours for a busy pool; a notebook is ready in seconds unless
# it waited for a place.
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAIT_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600)
NOTEBOOK_BUCKETS = (2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600, 1800, 3600)
CHIP_READINGS = (  # ChipSample column, metric, help
    ("util_ratio", "hourglass_chip_utilization_ratio", "A chip's utilisation (0 to 1)."),
    ("memory_used_bytes", "hourglass_chip_memory_used_bytes", "A chip's memory in use."),
    ("memory_total_bytes", "hourglass_chip_memory_total_bytes", "A chip's memory in all."),
    ("temp_c", "hourglass_chip_temperature_celsius", "A chip's temperature."),
    ("power_w", "hourglass_chip_power_watts", "A chip's power draw."),
)


def _pool_names():
    """Pool id -> name, with None (a node of no pool) -> the default pool's name."""
    names = dict(Pool.select(Pool.id, Pool.name).tuples())
    default = Pool.select(Pool.name).where(Pool.is_default).scalar()
    return {**names, None: default or ""}


def replicas_by_state():
    gauge = GaugeMetricFamily("hourglass_replicas", "Replicas by state.", labels=["state"])
    counts = dict(Replica.select(Replica.state, fn.COUNT(Replica.id))
                  .group_by(Replica.state).tuples())
    for state in REPLICA_STATES:
        gauge.add_metric([state], counts.get(state, 0))
    return gauge


def pending(pools):
    """Replicas waiting for a place, and how long the oldest has waited, per pool."""
    count = GaugeMetricFamily("hourglass_pending_replicas", "Replicas waiting to be placed.",
                              labels=["pool"])
    oldest = GaugeMetricFamily("hourglass_pending_oldest_seconds",
                               "How long the oldest pending replica has waited.",
                               labels=["pool"])
    now = utcnow()
    rows = (Replica.select(Task.pool, fn.COUNT(Replica.id), fn.MIN(Replica.created_at))
            .join(Task).where(Replica.state == "pending").group_by(Task.pool).tuples())
    for pool, number, first in rows:
        count.add_metric([pools[pool]], number)
        oldest.add_metric([pools[pool]], max(0.0, (now - first).total_seconds()))
    return [count, oldest]


def nodes_and_chips(pools):
    """Each enabled node's readiness, and its present chips per kind: all, held, free."""
    ready = GaugeMetricFamily("hourglass_node_ready", "1 when the node is Ready, else 0.",
                              labels=["node", "pool"])
    labels = ["node", "pool", "kind"]
    chips = GaugeMetricFamily("hourglass_chips", "Chips present on a node.", labels=labels)
    held = GaugeMetricFamily("hourglass_chips_held", "Chips a replica holds.", labels=labels)
    free = GaugeMetricFamily("hourglass_chips_free", "Chips no replica holds.", labels=labels)
    nodes = Node.select(Node.id, Node.name, Node.pool, Node.ready).where(Node.enabled)
    names = {}
    for node in nodes:
        names[node.id] = (node.name, pools[node.pool_id])
        ready.add_metric(names[node.id], int(node.ready))
    rows = (NodeChip.select(NodeChip.node, NodeChip.kind, fn.COUNT(NodeChip.id),
                            fn.COUNT(ReplicaChip.id))
            .join(ReplicaChip, JOIN.LEFT_OUTER, on=(ReplicaChip.chip == NodeChip.id))
            .where(NodeChip.present)
            .group_by(NodeChip.node, NodeChip.kind).tuples())
    for node, kind, total, taken in rows:
        if node in names:
            chips.add_metric([*names[node], kind], total)
            held.add_metric([*names[node], kind], taken)
            free.add_metric([*names[node], kind], total - taken)
    return [ready, chips, held, free]


def scheduler():
    """Whether a process holds the scheduler's lease, and when its tick last ran: a
    scheduler that stopped shows as a tick time that no longer moves."""
    leader = GaugeMetricFamily("hourglass_scheduler_leader",
                               "1 while a process holds the scheduler's lease, else 0.")
    tick = GaugeMetricFamily("hourglass_scheduler_last_tick_timestamp_seconds",
                             "When the scheduler's leader last ran its tick (Unix time).")
    lease = LeaderLease.get_or_none(LeaderLease.name == LEASE)
    leader.add_metric([], int(lease is not None and lease.expires_at > utcnow()))
    if lease is not None and lease.last_tick_at is not None:
        tick.add_metric([], lease.last_tick_at.replace(tzinfo=UTC).timestamp())
    return [leader, tick]


def money():
    charged = UsageMonth.select(fn.SUM(UsageMonth.charged)).scalar() or 0
    recharged = (LedgerEntry.select(fn.SUM(LedgerEntry.amount))
                 .where(LedgerEntry.kind == "recharge").scalar() or 0)
    return [GaugeMetricFamily("hourglass_charged_microunits",
                              f"Machine-time charged to renters in all, {MONEY}.",
                              value=int(charged)),
            GaugeMetricFamily("hourglass_recharged_microunits",
                              f"Recharges of renters' balances in all, {MONEY}.",
                              value=int(recharged))]


def replica_label(task_id, role, index):
    """A replica as metrics name it: "<task id>/<role>/<index>"."""
    return f"{task_id}/{role}/{index}"


def _latest(model, entity, since):
    """The ids of ``model``'s latest row per ``entity`` among those taken since ``since``.
    Grouped by ``entity + 0``, not ``entity``: the database then reads the few recent rows
    through the (at) index instead of every row through the (entity, at) one."""
    return model.select(fn.MAX(model.id)).where(model.at >= since).group_by(entity + 0)


def replica_usage(since):
    """CPU and memory of each starting or running replica, from its latest sample."""
    labels = ["replica", "task", "node"]
    cpu = GaugeMetricFamily("hourglass_replica_cpu_cores",
                            "A replica's CPU use in cores (1.5 = one and a half busy).",
                            labels=labels)
    memory = GaugeMetricFamily("hourglass_replica_memory_bytes", "A replica's memory use.",
                               labels=labels)
    rows = (ReplicaSample.select(ReplicaSample.cpu_cores, ReplicaSample.memory_bytes,
                                 Replica.task, Subtask.role, Replica.index, Node.name)
            .join(Replica).join(Subtask).switch(Replica).join(Node, JOIN.LEFT_OUTER)
            .where(ReplicaSample.id.in_(_latest(ReplicaSample, ReplicaSample.replica, since))
                   & Replica.state.in_(("starting", "running"))).tuples())
    for cores, used, task, role, index, node in rows:
        names = [replica_label(task, role, index), str(task), node or ""]
        if cores is not None:
            cpu.add_metric(names, cores)
        if used is not None:
            memory.add_metric(names, used)
    return [cpu, memory]


def chip_readings(since):
    """Each chip's readings of its latest sample, only those its plugin could read; the
    replica that held it then, or ""."""
    families = [GaugeMetricFamily(name, text, labels=["node", "kind", "chip", "replica"])
                for _column, name, text in CHIP_READINGS]
    columns = [getattr(ChipSample, column) for column, _name, _text in CHIP_READINGS]
    rows = (ChipSample.select(Node.name, NodeChip.kind, NodeChip.index, Replica.task,
                              Subtask.role, Replica.index, *columns)
            .join(NodeChip).join(Node).switch(ChipSample)
            .join(Replica, JOIN.LEFT_OUTER).join(Subtask, JOIN.LEFT_OUTER)
            .where(ChipSample.id.in_(_latest(ChipSample, ChipSample.chip, since))
                   & Node.enabled).tuples())
    for node, kind, chip, task, role, index, *readings in rows:
        holder = replica_label(task, role, index) if task is not None else ""
        for family, reading in zip(families, readings, strict=True):
            if reading is not None:
                family.add_metric([node, kind, str(chip), holder], reading)
    return families


class DatabaseCollector:
    """The gauges above, read from the database at each scrape; samples count when taken
    within ``FRESH_PERIODS`` of ``sample_seconds``."""

    def __init__(self, sample_seconds):
        self.fresh = timedelta(seconds=FRESH_PERIODS * sample_seconds)

    def collect(self):
        pools = _pool_names()
        since = utcnow() - self.fresh
        yield replicas_by_state()
        yield from pending(pools)
        yield from nodes_and_chips(pools)
        yield from scheduler()
        yield from money()
        yield from replica_usage(since)
        yield from chip_readings(since)


class Timings:
    """How long things take, as histograms the scheduler observes (it finds this in
    ``app.extensions["hourglass.timings"]``): a replica's wait from creation to its
    container's start, per pool; a scheduler pass; a notebook run from submission to a
    JupyterLab that answers. On ``registry``, or on none in multiprocess mode."""

    def __init__(self, registry=None):
        self.queue_wait = Histogram(
            "hourglass_queue_wait_seconds",
            "Time from a replica's creation (pending) to its container's start.",
            ["pool"], buckets=WAIT_BUCKETS, registry=registry)
        self.scheduler_pass = Histogram(
            "hourglass_scheduler_pass_seconds", "Time of one pass of the scheduler's leader.",
            buckets=PASS_BUCKETS, registry=registry)
        self.notebook_start = Histogram(
            "hourglass_notebook_start_seconds",
            "Time from a notebook run's submission to its JupyterLab answering.",
            buckets=NOTEBOOK_BUCKETS, registry=registry)


def use_multiprocess(folder):
    """Keep the histograms' values in files under ``folder`` (emptied first), for
    ``serve``'s gunicorn workers: prometheus_client's multiprocess mode. Call before any
    worker makes its app.

    prometheus_client chooses where metrics keep values when it is imported, from
    PROMETHEUS_MULTIPROC_DIR; ``serve`` knows the folder only later, so the value class is
    switched here as prometheus_client's own tests do."""
    shutil.rmtree(folder, ignore_errors=True)
    Path(folder).mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    values.ValueClass = values.MultiProcessValue()


def worker_exited(server, worker):
    """gunicorn's ``child_exit`` hook: prometheus_client's bookkeeping for a dead process
    (its live gauges go; its histograms' counts stay in the sums)."""
    multiprocess.mark_process_dead(worker.pid)


def _allowed():
    """A scrape token that matches, or (no token sent) a loopback peer when that is on."""
    token = current_app.config["METRICS_TOKEN"]
    sent = request.headers.get("Authorization", "")
    if sent:
        scheme, _, value = sent.partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode())
    try:
        peer = ip_address(request.remote_addr or "")
    except ValueError:  # a unix socket's peer has no address
        return False
    return current_app.config["METRICS_LOOPBACK"] and peer.is_loopback


@bp.get("/metrics")
def metrics():
    if not _allowed():
        return Response("A scrape token or a loopback address is needed.\n", 401,
                        {"WWW-Authenticate": 'Bearer realm="metrics"'}, mimetype="text/plain")
    registry = current_app.extensions["hourglass.metrics"]
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def init_app(app):
    """Register ``/metrics`` with a registry of this app's own, and the app's ``Timings``
    (a second app in one process, as in tests, has its own). In multiprocess mode the
    registry reads the histograms from every process's files instead."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(app.config["SAMPLE_SECONDS"]))
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)
        app.extensions["hourglass.timings"] = Timings()
    else:
        app.extensions["hourglass.timings"] = Timings(registry)
    app.extensions["hourglass.metrics"] = registry
    app.register_blueprint(bp)
