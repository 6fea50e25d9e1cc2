"""The rules for nodes a miner manages: adding a Podman endpoint, labels, cordon, drain.

What a node *is* (hostname, CPU, chips, Ready) comes from discovery in the
scheduler; here is only what the miner decides.
"""

import json
import re

from flask_babel import gettext as _
from peewee import IntegrityError

from portal.db import database
from portal.ledger import forget_node
from portal.models import Node, NodeChip, Replica
from portal.references import InUse, delete_unused

# Pattern bodies (``portal.values``), matched whole: the API document carries them too.
URL = r"(?:unix|ssh|tcp)://[!#-&(-;=?-~]+"  # printable ASCII but space, quotes, < and >
URL_MAX = 512
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
LABEL_KEY = r"[A-Za-z0-9](?:[A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?"
LABEL_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?"
URL_RE, NAME_RE = re.compile(URL), re.compile(NAME)
LABEL_KEY_RE, LABEL_VALUE_RE = re.compile(LABEL_KEY), re.compile(LABEL_VALUE)
MAX_LABELS = 32


class NodeError(ValueError):
    """Bad input for a node; the message is shown to the miner. ``field`` names the input it
    is about (``name``, ``url``, ``labels``), or is None for the request as a whole."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def add_node(name, url):
    """Add a manual node (a Podman API URL); discovery fills in the rest."""
    name, url = (name or "").strip(), (url or "").strip()
    if not NAME_RE.fullmatch(name):
        raise NodeError(_("A node name is 1-64 letters, digits, '.', '_' or '-'."), "name")
    if len(url) > URL_MAX or not URL_RE.fullmatch(url):
        raise NodeError(_("The address must be a Podman API URL: unix://…, ssh://… or tcp://…"),
                        "url")
    # One machine listed twice would give each chip out twice: unique among Podman nodes and
    # Slurm nodes with the host's own devices; only Slurm nodes with their own host root
    # (a cluster on one host) may share a Podman.
    if Node.select().where((Node.url == url) & (Node.slurm_cluster.is_null()
                                                | Node.host_root.in_(("", "/")))).exists():
        raise NodeError(_("A node with this name or address already exists."))
    try:
        return Node.create(name=name, url=url, source="manual")
    except IntegrityError:
        raise NodeError(_("A node with this name or address already exists.")) from None


def parse_labels(text):
    """``"zone=a\\ngpu=yes"`` -> ``{"gpu": "yes", "zone": "a"}``; raises NodeError."""
    labels = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _bad_labels()
        labels[key.strip()] = value.strip()
    return check_labels(labels)


def check_labels(labels):
    """``{key: value}`` labels checked as ``parse_labels`` checks its lines, sorted by key;
    raises NodeError. The API calls it with the JSON object it received."""
    for key, value in labels.items():
        if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
            raise _bad_labels()
    if len(labels) > MAX_LABELS:
        raise NodeError(_("At most %(n)d labels.", n=MAX_LABELS), "labels")
    return dict(sorted(labels.items()))


def _bad_labels():
    return NodeError(_("Labels are key=value lines; keys and values use letters, digits, "
                       "'-', '_' and '.' (up to 63), e.g. zone=lab-a."), "labels")


def labels_of(node):
    return json.loads(node.labels or "{}")


def set_labels(node, text):
    save_labels(node, parse_labels(text))


def save_labels(node, labels):
    """Replace the node's labels with ``labels`` ({key: value}), checked."""
    node.labels = json.dumps(check_labels(labels))
    node.save(only=[Node.labels])


def set_flags(node, **flags):
    """Set ``cordoned``, ``draining`` or ``enabled``. Draining implies cordoned."""
    allowed = {"cordoned", "draining", "enabled"}
    for key, value in flags.items():
        if key not in allowed:
            raise KeyError(key)
        setattr(node, key, bool(value))
    if node.draining:
        node.cordoned = True
    node.save(only=[Node.cordoned, Node.draining, Node.enabled])


def remove_node(node):
    """Forget a manual or connection node; the local node always stays."""
    if node.source == "local":
        raise NodeError(_("The local node cannot be removed; disable it instead."))
    busy = Replica.select().where((Replica.node == node)
                                  & Replica.state.in_(("starting", "running"))).count()
    if busy:
        raise NodeError(_("Node '%(name)s' still runs %(n)d replica(s): drain it and stop "
                          "them first.", name=node.name, n=busy))
    try:
        with database.atomic():
            delete_unused(node)  # its chips go with it; replicas and charges keep no node
            forget_node(node.id)  # nor do its earnings
    except InUse as exc:
        raise NodeError(str(exc)) from None


def chips_by_node(nodes):
    """{node id: {kind: count}} of the chips present on ``nodes``, in one query."""
    counts = {node.id: {} for node in nodes}
    query = (NodeChip.select(NodeChip.node, NodeChip.kind)
             .where(NodeChip.node.in_(list(counts)) & NodeChip.present).tuples())
    for node_id, kind in query:
        counts[node_id][kind] = counts[node_id].get(kind, 0) + 1
    return counts
