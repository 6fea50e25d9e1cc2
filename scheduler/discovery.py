"""Node discovery: which nodes exist, what each one is, and which chips it has.

``Discovery.run`` is the scheduler leader's periodic job. It first makes the
node list follow the settings (the local node at ``PODMAN_URL``; one node per
``podman system connection`` entry, disabled until the miner enables it;
manual nodes are the Nodes page's), then looks at every enabled node at once,
each in a thread of its own (up to ``workers``). Each node's result is stored as
soon as it is in, so a slow node does not hold the others back; each API call has
``timeout`` seconds and a node has ``3 * timeout`` in all.

A node is Ready when its Podman answers, is 4.0 or newer, its accelerators
could be read, and it can run a container made exactly like a replica's (the
**canary**, ``ContainerBackend.canary``: init, no capabilities, limits,
ulimits, a device, a task network with names); otherwise ``reason`` says why,
in English, with Podman's own error text and, where known, the fix ("install
catatonit"). So a node missing a package is NotReady before any renter's task
finds out. The canary runs the probe image; the local node gets it built from
the host's busybox when it lacks it. It runs on every discovery of a node,
except that one that passed there within ``CANARY_SECONDS`` stands.

Chips are found **on the node**: for the local node by reading ``host_root``
directly; for any other node by a probe container on that node (``scheduler.probe``).
"""

import json
import logging
import os
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from portal import settings
from portal.db import database
from portal.models import Node, NodeChip, NodeEvent, utcnow
from scheduler.accelerators import Chip, discover_all
from scheduler.backend import BackendError, NodeUnreachable, StartFailed
from scheduler.connections import list_connections
from scheduler.images import import_busybox
from scheduler.podman import HostInfo, PodmanBackend, ProbeImageMissing
from scheduler.podman_errors import error_chain, error_text, fix_for
from scheduler.probe import probe_chips

log = logging.getLogger(__name__)

DEFAULT_PROBE_IMAGE = "localhost/hourglass-probe:latest"
CANARY_SECONDS = 60  # a canary that passed on a node stands this long (see ``preflight``)
MIN_PODMAN = (4, 0)
LOST_CONNECTION = (requests.ConnectionError, requests.Timeout, subprocess.TimeoutExpired)


@dataclass
class Finding:
    """One look at one node. ``info`` is None when its Podman did not answer; ``chips`` is
    None when its accelerators were not read (its stored chips are then kept)."""

    info: HostInfo | None
    chips: list[Chip] | None
    reason: str = ""

    @property
    def ready(self):
        return not self.reason


class Discovery:
    """Discovers the nodes of this database.

    ``local_url``: the local node's Podman URL (``PODMAN_URL``); ``host_root``:
    where the local node's host paths are read (``HOST_ROOT``);
    ``probe_image``: the image probes run on other nodes; ``probe_root``: where
    a probe finds a node's host paths, ``/`` except in tests; ``clusters``: what discovers
    the Slurm clusters' nodes after the Podman nodes'
    (``scheduler.slurm_discovery.discover_clusters``; None: none).
    """

    def __init__(self, local_url, host_root=Path("/"), probe_image=DEFAULT_PROBE_IMAGE,
                 timeout=5.0, workers=16, probe_root=Path("/"), clusters=None):
        self.local_url = local_url
        self.host_root = Path(host_root)
        self.probe_image = probe_image
        self.timeout = timeout
        self.deadline = 3 * timeout
        self.workers = workers
        self.probe_root = Path(probe_root)
        self.clusters = clusters
        self.instance = None  # the database's instance id, read by ``run``
        self._canaries = {}  # node id -> (when its canary last passed, its Podman version)
        self._lock = threading.Lock()

    def run(self, local_only=False) -> dict[int, Finding]:
        """Sync the node list, discover every enabled Podman node (``local_only``: the local
        node), store it all, then the Slurm clusters' nodes; {Podman node id: finding}.

        Called by the scheduler's leader (and tests, the bench, ``serve``'s preflight);
        runs one at a time.
        """
        with self._lock:
            connections = _connections()
            with database.connection_context():
                self.sync_nodes(connections)
                nodes = Node.select().where(Node.enabled & Node.slurm_cluster.is_null())
                if local_only:
                    nodes = nodes.where(Node.url == self.local_url)
                nodes = list(nodes)
                self.instance = settings.instance_id()
            identities = {c.url: c.identity for c in connections or ()}
            found = self._discover(nodes, identities)
            if self.clusters is not None and not local_only:
                with database.connection_context():
                    self.clusters()
            return found

    def sync_nodes(self, connections):
        """Add or update the local node and one node per connection, in one transaction.

        ``connections`` None (the list could not be read) leaves connection
        nodes alone; a connection node that left the list goes too, unless
        the miner enabled it.
        """
        with database.atomic():
            local = Node.get_or_none(Node.source == "local")
            # A Slurm cluster's nodes may share the local Podman (a cluster on this host).
            holder = Node.get_or_none((Node.url == self.local_url)
                                      & Node.slurm_cluster.is_null())
            if holder is not None and (local is None or holder.id != local.id):
                log.warning("node %r already has the local Podman URL; no local node", holder.name)
            elif local is None:
                Node.create(name=unique_name("local"), url=self.local_url, source="local")
            elif local.url != self.local_url:
                Node.update(url=self.local_url).where(Node.id == local.id).execute()
            if connections is None:
                return
            known = {url for (url,) in Node.select(Node.url).tuples()}
            for connection in connections:
                if connection.url not in known:
                    known.add(connection.url)
                    Node.create(name=unique_name(connection.name), url=connection.url,
                                source="connection", enabled=False)
            Node.delete().where((Node.source == "connection") & ~Node.enabled
                                & Node.url.not_in([c.url for c in connections])).execute()

    def inspect(self, node, identity=None) -> Finding:
        """Look at ``node`` (a Node row): its host through Podman, then its chips.

        Any failure of the node is its reason, never an exception; no database access.
        """
        backend = PodmanBackend(node.url, self.timeout, identity)
        try:
            info = backend.host_info()
        except Exception as error:  # whatever a dead or odd endpoint raises
            return Finding(None, None, _not_answering(error))
        if not podman_supported(info.podman_version):
            return Finding(info, None, f"Podman {info.podman_version or '?'} is too old "
                                       f"(need {MIN_PODMAN[0]}.{MIN_PODMAN[1]}+)")
        try:
            chips = (self._local_chips() if node.source == "local"
                     else probe_chips(backend, self.probe_image, self.probe_root))
        except ProbeImageMissing:
            return Finding(info, None, f"probe image {self.probe_image} missing on the node")
        except Exception as error:
            if _lost_connection(error):  # it stopped answering during the probe
                return Finding(info, None, _not_answering(error))
            return Finding(info, None, f"accelerators unreadable: {_short(error)}")
        return Finding(info, chips, self.preflight(backend, node, info))

    def preflight(self, backend, node, info) -> str:
        """"" when ``node`` runs the canary; else why not (Podman's message and the fix).

        A canary that passed on the node less than ``CANARY_SECONDS`` ago, under the same
        Podman version, stands: a discovery every second (as tests use) does not run a
        container every second. One that failed is run again on the next discovery."""
        passed = self._canaries.get(node.id)
        if passed is not None and passed[1] == info.podman_version \
                and time.monotonic() - passed[0] < CANARY_SECONDS:
            return ""
        self._canaries.pop(node.id, None)
        try:
            if self.probe_image not in info.images:
                if node.source != "local":
                    return f"probe image {self.probe_image} missing on the node"
                import_busybox(backend, self.probe_image)
            backend.canary(self.probe_image, self.instance or "preflight", f"-n{node.id}")
            self._canaries[node.id] = (time.monotonic(), info.podman_version)
        except StartFailed as error:
            fix = fix_for(str(error))
            return (f"cannot start a container like a replica's: {_short(error)}"
                    + (f". Fix: {fix}" if fix else ""))
        except NodeUnreachable as error:
            return _not_answering(error)
        except BackendError as error:
            return f"the canary container failed: {_short(error)}"
        except OSError as error:  # no busybox on this host to build the probe image from
            return (f"probe image {self.probe_image} missing and not buildable here "
                    f"({_short(error)}); install busybox-static")
        return ""

    def _local_chips(self):
        if not self.host_root.is_dir():
            raise FileNotFoundError(f"host root {self.host_root} is not a folder")
        return [chip for chips in discover_all(self.host_root).values() for chip in chips]

    def _discover(self, nodes, identities):
        if not nodes:
            return {}
        threads = ThreadPoolExecutor(min(self.workers, len(nodes)),
                                     thread_name_prefix="discovery")
        futures = {threads.submit(self._discover_one, node, identities.get(node.url)): node
                   for node in nodes}
        done, late = wait(futures, timeout=self.deadline)
        threads.shutdown(wait=False, cancel_futures=True)
        found = {futures[future].id: future.result() for future in done}
        for future in late:
            node = futures[future]
            found[node.id] = Finding(None, None, f"Podman API not answering: "
                                                 f"no answer within {self.deadline:g} s")
            with database.connection_context():
                record(node, found[node.id])
        return found

    def _discover_one(self, node, identity):
        finding = self.inspect(node, identity)
        with database.connection_context():
            record(node, finding)
        return finding


def record(node, finding, now=None):
    """Store ``finding`` on ``node`` and replace its chips, in one transaction.

    The miner's fields (name, labels, enabled, cordon, pool) are left alone;
    ``ready_changed_at`` moves only when Ready flips, and then a ``NodeEvent`` says so (the
    miner's alerts). Needs an open connection.
    """
    now = now or utcnow()
    fields = {Node.ready: finding.ready, Node.reason: finding.reason[:512]}
    if finding.info is not None:
        info = finding.info
        fields.update({
            Node.hostname: info.hostname[:255], Node.address: address_of(node.url),
            Node.os_name: info.os_name[:255], Node.kernel: info.kernel[:255],
            Node.podman_version: info.podman_version[:64], Node.cpu_millis: info.cpus * 1000,
            Node.memory_mib: info.memory_bytes // 2**20, Node.last_seen_at: now,
            Node.images: json.dumps(list(info.images))})
    with database.atomic():
        note_readiness(node.id, finding.ready, finding.reason, now)
        if Node.update(fields).where(Node.id == node.id).execute() and finding.chips is not None:
            replace_chips(node.id, finding.chips)


def note_readiness(node_id, ready, reason, now):
    """When the node's Ready is about to flip to ``ready``: move ``ready_changed_at`` and write
    a ``NodeEvent`` saying so (the miner's alerts). Before storing ``ready``, in the caller's
    transaction."""
    if Node.update(ready_changed_at=now).where(
            (Node.id == node_id) & (Node.ready != ready)).execute():
        NodeEvent.create(node=node_id, at=now, ready=ready, reason=reason[:512])


def replace_chips(node_id, chips):
    """The node's chips as found: new ones added, changed ones updated, missing ones marked
    absent (never deleted: one failed read must not free a chip a replica holds)."""
    old = {(row.kind, row.index): row for row in NodeChip.select().where(NodeChip.node == node_id)}
    new = {(chip.kind, chip.index): chip for chip in chips}
    missing = [row.id for key, row in old.items() if key not in new and row.present]
    if missing:
        NodeChip.update(present=False).where(NodeChip.id.in_(missing)).execute()
    for key, chip in new.items():
        values = {"device": chip.device[:255], "card": chip.card, "driver": chip.driver[:64],
                  "present": True}
        row = old.get(key)
        if row is None:
            NodeChip.create(node=node_id, kind=chip.kind, index=chip.index, **values)
        elif any(getattr(row, name) != value for name, value in values.items()):
            NodeChip.update(values).where(NodeChip.id == row.id).execute()


def _connections():
    """This user's Podman connections, or None (logged) when they cannot be listed."""
    try:
        return list_connections()
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as error:
        log.warning("podman system connection list failed: %s", _short(error))
        return None


def unique_name(base: str) -> str:
    """``base`` (cut to fit), or ``base-2``, ``base-3``..., whichever no node is named yet."""
    base = base.strip()[:56] or "node"
    taken = {name for (name,) in Node.select(Node.name).tuples()}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def podman_supported(version: str) -> bool:
    """True for Podman ``MIN_PODMAN`` or newer ("4.3.1", "5.0.0-dev"); False if unreadable."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return bool(match) and (int(match[1]), int(match[2])) >= MIN_PODMAN


def address_of(url: str) -> str:
    """Where other nodes reach this node: the host part of an ``ssh://`` or ``tcp://`` URL;
    for a unix socket (a node on this host) ``host_address()``.

    Podman's ``info`` names no address of the host, so the URL is what we know.
    Containers of a task that spans nodes reach their peers at these addresses.
    """
    parts = urlsplit(url)
    if parts.scheme in {"ssh", "http+ssh", "tcp", "http"} and parts.hostname:
        return parts.hostname
    return host_address()


def host_address() -> str:
    """This host's address for other nodes: ``HOURGLASS_NODE_ADDRESS`` if set, else the
    source address of its default route (no packet is sent), else its name's address."""
    configured = os.environ.get("HOURGLASS_NODE_ADDRESS", "").strip()
    if configured:
        return configured
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # UDP: picks a route, sends nothing
            return probe.getsockname()[0]
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _lost_connection(error):
    return any(isinstance(e, LOST_CONNECTION) for e in error_chain(error))


def _not_answering(error):
    """The reason for a node whose API failed; its first cause names the fault
    ("Connection refused", "timed out")."""
    return f"Podman API not answering: {_short(error_chain(error)[-1])}"


def _short(error):
    text = error_text(error)
    return text if len(text) <= 200 else text[:199] + "…"
