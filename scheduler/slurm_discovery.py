"""The nodes of Slurm pools, found from their cluster's slurmrestd (docs/slurm.md).

``discover_cluster`` makes one ``Node`` (source ``slurm``) of every Slurm node in a partition
mapped to a pool of the cluster (``Pool.partition``), named ``<cluster>-<node>`` so no
Podman node's name can clash, reached at the cluster's ``podman_url`` and with its devices
under ``host_root`` (both with ``{node}`` and ``{address}`` filled in). CPUs, memory,
readiness and chips are Slurm's: a node is Ready when Slurm would start jobs on it (idle,
mixed or allocated; not drained, failing or powered down), else NotReady with Slurm's state
and reason; each GRES unit of a known kind (``GRES_KINDS``: ``tpu:bm1684x:3`` is three
``sophgo.com/bm1684x`` chips) is a ``NodeChip`` whose index is its place in gres.conf's
``File=`` list, which must list the devices in host order. A node no longer in a mapped
partition, or no longer in Slurm, stays (replicas may reference it) but is NotReady; when
slurmrestd does not answer, every node of the cluster is NotReady with the reason.
"""

import hashlib
import logging
import re
from collections import Counter

from peewee import IntegrityError

from portal.db import database
from portal.models import Node, Pool, SlurmCluster, utcnow
from portal.slurm import SlurmError
from scheduler.accelerators.base import Chip
from scheduler.accelerators.nvidia import GPU
from scheduler.accelerators.sophgo import BM1684, BM1684X
from scheduler.discovery import note_readiness, replace_chips
from scheduler.slurm_rest import client_for

log = logging.getLogger(__name__)

# A GRES ``name:type`` -> the system resource kind its units are (type None: any type).
GRES_KINDS = {("tpu", "bm1684x"): BM1684X, ("tpu", "bm1684"): BM1684, ("gpu", None): GPU}
# Where chip ``index`` of each kind is, under the node's host root.
DEVICES = {BM1684X: "dev/bm-sophon{index}", BM1684: "dev/bm-sophon{index}",
           GPU: "dev/nvidia{index}"}
# Slurm's base states of a node that runs jobs (COMPLETING is a flag on one of them), and
# the flags that stop it taking new ones.
READY_STATES = {"idle", "mixed", "allocated"}
NOT_READY_FLAGS = {"DRAIN", "FAIL", "NOT_RESPONDING", "INVALID_REG", "POWER_DOWN",
                   "POWERED_DOWN", "POWERING_DOWN", "POWERING_UP", "REBOOT_ISSUED"}
NAME_MAX = 64  # Node.name
HOST_ROOTS = ("", "/")  # a host root that is the machine's own
SAME_MACHINE = ("its Podman URL and host root are another node's: give each node its own with "
                "{node} or {address} in the cluster's Podman URL or host root")
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def gres_kind(name, gres_type):
    """The kind of a GRES ``name:type`` unit (``tpu``, ``bm1684x`` -> ``sophgo.com/bm1684x``),
    or None when it is not a chip Hourglass knows."""
    return GRES_KINDS.get((name, gres_type)) or GRES_KINDS.get((name, None))


def node_name(cluster_name, slurm_name):
    """The Node name of Slurm node ``slurm_name``: ``<cluster>-<node>`` in the characters a
    node name may have; cut to fit with a hash of the whole kept, so it stays unique."""
    name = UNSAFE.sub("-", f"{cluster_name}-{slurm_name}")
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:NAME_MAX - 9]}-{digest}"
    return name


def fill(template, node):
    """``template`` with ``{node}`` and ``{address}`` of SlurmNode ``node`` filled in."""
    return template.replace("{node}", node.name).replace("{address}", node.address or node.name)


def readiness(node):
    """"" when Slurm would start jobs on SlurmNode ``node``; else why not, in Slurm's words."""
    bad = [flag for flag in node.flags if flag in NOT_READY_FLAGS]
    if node.state in READY_STATES and not bad:
        return ""
    state = "+".join([node.state.upper(), *bad])
    return f"Slurm: {state}" + (f" ({node.reason})" if node.reason else "")


def chips_of(node, host_root):
    """The chips of SlurmNode ``node``'s GRES, their devices under ``host_root``."""
    chips = []
    for (name, gres_type), count in sorted(node.gres.items()):
        kind = gres_kind(name, gres_type)
        if kind is None:
            continue
        for index in range(count):
            device = f"{host_root.rstrip('/')}/{DEVICES[kind].format(index=index)}"
            chips.append(Chip(kind, index, device))
    return chips


def discover_clusters():
    """Discover every Slurm cluster's nodes; a cluster's failure leaves the others alone.
    Needs an open connection."""
    for cluster in SlurmCluster.select().order_by(SlurmCluster.id):
        try:
            discover_cluster(cluster)
        except Exception:
            log.exception("discovery of Slurm cluster %r failed", cluster.name)


def discover_cluster(cluster, client=None, now=None):
    """Add and update the Node rows of SlurmCluster ``cluster`` from its slurmrestd
    (``client``, default ``client_for(cluster)``); {node id: reason, "" when Ready} of the
    cluster's nodes. Needs an open connection."""
    now = now or utcnow()
    pools = {}
    for pool in Pool.select().where(Pool.slurm_cluster == cluster).order_by(Pool.id):
        pools.setdefault(pool.partition, pool)
    try:
        found = (client or client_for(cluster)).nodes()
    except SlurmError as error:
        reason = f"Slurm cluster {cluster.name}: {error}"
        return {node.id: _not_ready(node, reason, now) for node in _nodes_of(cluster)}
    seen, results = {}, {}
    # Nodes that would share a Podman URL and host root (with each other, or with a Podman
    # node, whose devices are the host's own) are one machine's devices listed twice: each
    # chip could be given out twice. None of them is Ready.
    machines = Counter(_where(cluster, n) for n in found)
    machines.update((url, root) for (url,) in Node.select(Node.url).where(
        Node.slurm_cluster.is_null()).tuples() for root in HOST_ROOTS)
    for slurm_node in found:
        pool = next((pools[p] for p in slurm_node.partitions if p in pools), None)
        seen[node_name(cluster.name, slurm_node.name)] = slurm_node
        if pool is not None:
            node_id, reason = _store(cluster, slurm_node, pool, now,
                                     machines[_where(cluster, slurm_node)] > 1)
            if node_id is not None:
                results[node_id] = reason
    for node in _nodes_of(cluster):
        if node.id not in results:
            results[node.id] = _not_ready(node, _gone(cluster, node, seen), now)
    return results


def _where(cluster, slurm_node):
    """(Podman URL, host root) of ``slurm_node``: which machine's devices its chips are."""
    return fill(cluster.podman_url, slurm_node)[:512], fill(cluster.host_root, slurm_node)[:512]


def _nodes_of(cluster):
    return list(Node.select().where(Node.slurm_cluster == cluster))


def _gone(cluster, node, seen):
    """Why a node of ``cluster`` that discovery did not store is NotReady."""
    if node.name not in seen:
        return f"not in Slurm cluster {cluster.name} any more"
    if node.pool_id is not None and node.pool.partition:
        return f"not in partition {node.pool.partition} of Slurm cluster {cluster.name}"
    return f"not in a partition of Slurm cluster {cluster.name} that a pool maps"


def _store(cluster, slurm_node, pool, now, same_machine=False):
    """Add or update the Node of ``slurm_node`` and its chips; (its id, its reason). One whose
    name is another node's is not added: (None, its reason). Several may share one Podman
    URL (a cluster on one host), each with its own host root; ``same_machine`` (another has
    both) makes it NotReady, saying so."""
    name = node_name(cluster.name, slurm_node.name)
    reason = SAME_MACHINE if same_machine else readiness(slurm_node)
    url, host_root = _where(cluster, slurm_node)
    fields = {"url": url, "source": "slurm", "host_root": host_root,
              "slurm_cluster": cluster.id, "pool": pool.id, "hostname": slurm_node.hostname[:255],
              "address": slurm_node.address[:255], "cpu_millis": slurm_node.cpus * 1000,
              "memory_mib": slurm_node.memory_mib, "last_seen_at": now}
    try:
        with database.atomic():
            node = Node.get_or_none((Node.name == name) & (Node.slurm_cluster == cluster))
            if node is None:
                node = Node.create(name=name, ready=False, reason="not discovered yet",
                                   ready_changed_at=now, **fields)
            note_readiness(node.id, not reason, reason, now)
            Node.update(ready=not reason, reason=reason[:512], **fields).where(
                Node.id == node.id).execute()
            replace_chips(node.id, chips_of(slurm_node, fill(cluster.host_root, slurm_node)))
    except IntegrityError:  # Node.name is unique
        log.warning("Slurm node %s of cluster %r not added: node name %r is another node's",
                    slurm_node.name, cluster.name, name)
        return None, reason
    return node.id, reason


def _not_ready(node, reason, now):
    """Mark ``node`` NotReady with ``reason`` (its chips stay as they were); the reason."""
    with database.atomic():
        note_readiness(node.id, False, reason, now)
        Node.update(ready=False, reason=reason[:512]).where(Node.id == node.id).execute()
    return reason
