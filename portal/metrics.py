"""``GET /metrics``: Hourglass's state in Prometheus's text format.

Every value is read from the database when Prometheus scrapes (a custom
collector on a registry of the app's own), so any gunicorn worker answers the
same and no process keeps counts of its own. Sums of money come from what is
kept beside the ledger: ``UsageMonth`` for charges, the few recharge rows
through the ledger's (kind, at) index.

Only a scraper may read it: a request with ``Authorization: Bearer
<HOURGLASS_METRICS_TOKEN>``, or one from a loopback address while
``HOURGLASS_METRICS_LOOPBACK`` is on. Not behind the login; GET only.
"""

import hmac
from datetime import UTC
from ipaddress import ip_address

from flask import Blueprint, Response, current_app, request
from peewee import JOIN, fn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from portal.models import (
    REPLICA_STATES,
    LeaderLease,
    LedgerEntry,
    Node,
    NodeChip,
    Pool,
    Replica,
    ReplicaChip,
    Task,
    UsageMonth,
    utcnow,
)

bp = Blueprint("metrics", __name__)
MONEY = "in micro-units of the miner's currency (1000000 = 1)"
LEASE = "scheduler"  # the scheduler's lease row (scheduler.lease.LEASE_NAME)


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


class DatabaseCollector:
    """The gauges above, read from the database at each scrape."""

    def collect(self):
        pools = _pool_names()
        yield replicas_by_state()
        yield from pending(pools)
        yield from nodes_and_chips(pools)
        yield from scheduler()
        yield from money()


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
    """Register ``/metrics`` with a registry of this app's own (a second app in one
    process, as in tests, registers its own)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    app.extensions["hourglass.metrics"] = registry
    app.register_blueprint(bp)
