"""Nodes as the miner sees them: what discovery found, their chips and their pool.

One query for nodes with their pools, one for chips: the list costs the same
number of queries for 3 nodes or 300.
"""

import json

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import JOIN

from portal.api.errors import ApiError
from portal.api.registry import route
from portal.api.schema import Array, Boolean, Integer, Map, Record, String, iso
from portal.models import Node, NodeChip, Pool

CHIP = Record({
    "kind": String(_l("System resource kind, e.g. sophgo.com/bm1684x")),
    "index": Integer(_l("The chip's number on its host")),
    "device": String(_l("Device path on the host")),
}, name="Chip")

NODE = Record({
    "id": Integer(),
    "name": String(),
    "url": String(_l("Podman endpoint: unix://, ssh:// or tcp://")),
    "source": String(_l("local, connection or manual")),
    "enabled": Boolean(),
    "ready": Boolean(),
    "reason": String(_l("Why the node is not ready")),
    "ready_changed_at": String(format="date-time"),
    "last_seen_at": String(format="date-time", nullable=True),
    "hostname": String(),
    "address": String(),
    "os_name": String(),
    "kernel": String(),
    "podman_version": String(),
    "cpu_millis": Integer(_l("CPU in millicores")),
    "memory_mib": Integer(_l("Memory in MiB")),
    "labels": Map(String(), _l("Labels the miner gave the node")),
    "cordoned": Boolean(_l("No new replicas are placed here")),
    "draining": Boolean(),
    "pool": String(_l("The node's pool, or null for the default pool"), nullable=True),
    "chips": Array(CHIP),
}, name="Node")


def _nodes():
    return Node.select(Node, Pool).join(Pool, JOIN.LEFT_OUTER).order_by(Node.name)


def _chips(nodes):
    """{node id: [chip dicts]} for these nodes, in one query."""
    chips = {node.id: [] for node in nodes}
    query = (NodeChip.select().where(NodeChip.node.in_(list(chips)))
             .order_by(NodeChip.kind, NodeChip.index))
    for chip in query:
        chips[chip.node_id].append({"kind": chip.kind, "index": chip.index,
                                    "device": chip.device})
    return chips


def node_json(node, chips):
    pool = node.pool
    return {
        "id": node.id, "name": node.name, "url": node.url, "source": node.source,
        "enabled": node.enabled, "ready": node.ready, "reason": node.reason,
        "ready_changed_at": iso(node.ready_changed_at), "last_seen_at": iso(node.last_seen_at),
        "hostname": node.hostname, "address": node.address, "os_name": node.os_name,
        "kernel": node.kernel, "podman_version": node.podman_version,
        "cpu_millis": node.cpu_millis, "memory_mib": node.memory_mib,
        "labels": json.loads(node.labels or "{}"), "cordoned": node.cordoned,
        "draining": node.draining,
        "pool": pool.name if pool is not None and not pool.is_default else None,
        "chips": chips,
    }


@route("/nodes", summary=_l("Every node with its chips"), role="miner", response=Array(NODE))
def list_nodes():
    nodes = list(_nodes())
    chips = _chips(nodes)
    return [node_json(node, chips[node.id]) for node in nodes]


@route("/nodes/<int:node_id>", summary=_l("One node with its chips"), role="miner",
       response=NODE)
def get_node(node_id):
    nodes = list(_nodes().where(Node.id == node_id))
    if not nodes:
        raise ApiError(404, "not_found", _("There is no node %(id)d.", id=node_id))
    return node_json(nodes[0], _chips(nodes)[node_id])
