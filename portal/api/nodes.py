"""Nodes as the miner sees them: what discovery found, their chips and their pool; and what
the miner decides: add a Podman endpoint, labels, cordon, drain, enable, remove.

One query for nodes with their pools, one for chips: the list costs the same
number of queries for 3 nodes or 300. Adding, removing, enabling or disabling
a node tells the scheduler (``nodes_changed``) to discover again at once.
"""

import json

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import JOIN

from portal.api.errors import ApiError, refused
from portal.api.registry import route
from portal.api.resources import MAX_ID, get_or_404
from portal.api.schema import Array, Boolean, Integer, Map, Object, Record, String, iso
from portal.db import database
from portal.models import Node, NodeChip, Pool
from portal.nodes import (
    LABEL_KEY,
    LABEL_VALUE,
    MAX_LABELS,
    NAME,
    URL,
    URL_MAX,
    NodeError,
    add_node,
    remove_node,
    save_labels,
    set_flags,
)
from portal.signals import nodes_changed

CHIP = Record({
    "kind": String(_l("System resource kind, e.g. sophgo.com/bm1684x")),
    "index": Integer(_l("The chip's number on its host")),
    "device": String(_l("Device path on the host")),
    "present": Boolean(_l("False when the last discovery did not find the chip: it is not "
                          "placed, and a replica holding it keeps it")),
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
                                    "device": chip.device, "present": chip.present})
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


NEW_NODE = Object({
    "name": String(_l("1-64 letters, digits, '.', '_' or '-'; unique (taken: 409)"),
                   min_length=1, max_length=64, pattern=NAME,
                   rule=_l("letters, digits, '.', '_' or '-'")),
    "url": String(_l("Podman API URL: unix://..., ssh://user@host/run/podman/podman.sock or "
                     "tcp://..."), min_length=1, max_length=URL_MAX, pattern=URL,
                  rule=_l("a Podman API URL: unix://..., ssh://... or tcp://...")),
}, required=("name", "url"), name="NewNode")
NODE_CHANGE = Object({
    "labels": Map(String(max_length=63, pattern=LABEL_VALUE, rule=_l("a label value")),
                  _l("The whole set of labels, replacing the old one: keys and values "
                     "of letters, digits, '-', '_' and '.' (up to 63)"), max_items=MAX_LABELS,
                  keys=String(min_length=1, max_length=63, pattern=LABEL_KEY,
                              rule=_l("a label key"))),
    "cordoned": Boolean(_l("No new replicas are placed here; a draining node stays cordoned "
                           "(cordoned false with draining true: 409)")),
    "draining": Boolean(_l("Draining implies cordoned")),
    "enabled": Boolean(),
}, name="NodeChange", description=_l("Any of the fields; the others stay as they are"))


def _invalid(exc):
    return refused(str(exc), {exc.field: str(exc)} if exc.field else None)


def _node_or_404(node_id):
    return get_or_404(Node, node_id, _("There is no node %(id)d.", id=node_id))


@route("/nodes/<int:node_id>", summary=_l("One node with its chips"), role="miner",
       response=NODE)
def get_node(node_id):
    return _one(node_id)


def _one(node_id):
    nodes = list(_nodes().where(Node.id == node_id)) if 0 < node_id <= MAX_ID else []
    if not nodes:
        raise ApiError(404, "not_found", _("There is no node %(id)d.", id=node_id))
    return node_json(nodes[0], _chips(nodes)[node_id])


@route("/nodes", "POST", summary=_l("Add a node (a Podman API URL); discovery fills in the rest"),
       role="miner", body=NEW_NODE, response=NODE, status=201)
def add_node_api(body):
    try:
        node = add_node(body["name"], body["url"])
    except NodeError as exc:
        raise _invalid(exc) from None
    nodes_changed.send(current_app._get_current_object())
    return _one(node.id)


@route("/nodes/<int:node_id>", "PATCH",
       summary=_l("Change a node's labels, cordoned, draining or enabled"), role="miner",
       body=NODE_CHANGE, response=NODE)
def update_node_api(node_id, body):
    node = _node_or_404(node_id)
    flags = {key: body[key] for key in ("cordoned", "draining", "enabled") if key in body}
    if flags.get("cordoned") is False and flags.get("draining", node.draining):
        message = _("A draining node stays cordoned: send \"draining\": false as well.")
        raise refused(message, {"cordoned": message})
    try:
        with database.atomic():
            if "labels" in body:
                save_labels(node, body["labels"])
            if flags:
                set_flags(node, **flags)
    except NodeError as exc:
        raise _invalid(exc) from None
    if "enabled" in flags:
        nodes_changed.send(current_app._get_current_object())
    return _one(node_id)


@route("/nodes/<int:node_id>", "DELETE",
       summary=_l("Remove a node (the local node: 409; disable it instead)"), role="miner")
def remove_node_api(node_id):
    try:
        remove_node(_node_or_404(node_id))
    except NodeError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    nodes_changed.send(current_app._get_current_object())
