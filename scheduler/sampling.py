"""The samples the built-in charts and /metrics read: nodes, replicas and chips, over time.

``Sampler.run`` is the scheduler leader's ``sampling`` job, every ``SAMPLE_SECONDS``. Each
enabled Ready node is read at once, each in a thread of its own, through its Podman
(``PodmanBackend``): its memory (``host_usage``, one ``info`` call) and its running
replicas' counters (``usage``, one ``/containers/stats`` call for all of them; when one
is gone, a list of the running ones and one more for those, never a call each). Each call
has ``timeout`` seconds and a node ``2 * timeout`` in all: a node that does not answer by
then is left out of this round, and while a read of it is still under way the next
rounds leave it out too, so a silent node never holds the others back nor piles up
threads. What came in is written in one transaction:

- a ``NodeSample`` per node that answered: memory used and in all, how many of its chips
  replicas hold, and for the local node the share of its CPU busy since the round before.
  The local node's figures are read under ``host_root`` and counted as node-exporter's
  are (portal.series charts those when there is a Prometheus): CPU busy is all but idle
  (``proc/stat``, iowait is busy), memory used is MemTotal - MemAvailable
  (``proc/meminfo``). Another node's memory is Podman's, whose ``info`` knows no
  MemAvailable: used is memTotal - memFree, the page cache in it; Podman's own
  ``cpuUtilization`` is an average since the host booted, so another node's CPU is None
  (node-exporter has both);
- a ``ReplicaSample`` per running replica Podman gave counters for: memory, and CPU in
  cores from the difference of its CPU time since the round before (None the first time);
- a ``ChipSample`` per present chip of the local node its accelerator plugin can read
  (``metrics`` under ``host_root``; other nodes' chips are read by a probe container at
  discovery only), naming the replica holding it.

What the sampler keeps between rounds (a Podman backend and the read under way per node,
the last counters per replica) is only of the nodes and replicas of the latest round:
a node removed, disabled or no longer Ready, or a replica that ended, is forgotten.
``close`` (the service's shutdown) ends its threads.
"""

import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from peewee import fn

from portal.db import database
from portal.models import (
    ChipSample,
    Node,
    NodeChip,
    NodeSample,
    Replica,
    ReplicaChip,
    ReplicaSample,
    utcnow,
)
from scheduler.accelerators import Chip, plugin_for
from scheduler.accelerators.cpu import cpu_times, memory_now
from scheduler.podman import PodmanBackend

log = logging.getLogger(__name__)

CHIP_READINGS = ("util_ratio", "memory_used_bytes", "memory_total_bytes", "temp_c", "power_w")


class Sampler:
    """``local_url``: the local node's Podman URL (``PODMAN_URL``); ``host_root``: where its
    host paths are read (``HOST_ROOT``). ``timeout``: seconds for each call to a node;
    ``workers``: nodes read at once."""

    def __init__(self, local_url, host_root=Path("/"), timeout=3.0, workers=16):
        self.local_url = local_url
        self.host_root = Path(host_root)
        self.timeout = timeout
        self.deadline = 2 * timeout
        self.threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sampling")
        self._backends = {}
        self._reading = {}  # node url -> the future of its read, while under way
        self._last_usage = {}  # replica id -> its ContainerUsage of the round before
        self._last_cpu = None  # the local host's (busy, all) CPU ticks of the round before
        self._lock = threading.Lock()

    def run(self, now=None):
        """One round: read the nodes, write what they gave; the number of rows written.
        One at a time; opens its own database connection."""
        with self._lock:
            now = now or utcnow()
            with database.connection_context():
                nodes, replicas, held_on, held, chips = self._look_up()
            self._forget_all_but({node.url for node in nodes})
            futures, sharing = {}, defaultdict(list)  # nodes by URL: Slurm's may share one
            for node in nodes:
                sharing[node.url].append(node)
            for url, group in sharing.items():
                running = self._reading.get(url)
                if running is not None and not running.done():
                    log.info("node %s: its last sample is still being read; skipped",
                             group[0].name)
                    continue
                handles = [r.container for node in group for r in replicas[node.id]]
                self._reading[url] = self.threads.submit(self._read, url, handles)
                futures.update((node.id, self._reading[url]) for node in group)
            chip_future = self.threads.submit(self._read_chips, chips) if chips else None
            wait([*futures.values()] + ([chip_future] if chip_future else []),
                 timeout=self.deadline)
            rows = self._rows(now, nodes, replicas, held_on, futures)
            chip_rows = self._chip_rows(now, chips, held, chip_future)
            with database.connection_context(), database.atomic():
                for model, batch in zip((NodeSample, ReplicaSample, ChipSample),
                                        (*rows, chip_rows), strict=True):
                    if batch:
                        model.insert_many(batch).execute()
            return sum(map(len, rows)) + len(chip_rows)

    def _look_up(self):
        """The enabled Ready nodes; their running replicas and their chips held, by node id;
        the local node's present chips and {chip id: replica id} of those held."""
        nodes = list(Node.select().where(Node.enabled & Node.ready))
        replicas = defaultdict(list)
        for replica in (Replica.select(Replica.id, Replica.node, Replica.container)
                        .where((Replica.state == "running") & (Replica.container != "")
                               & Replica.node.in_([node.id for node in nodes]))):
            replicas[replica.node_id].append(replica)
        held_on = defaultdict(int, ReplicaChip.select(NodeChip.node, fn.COUNT(ReplicaChip.id))
                              .join(NodeChip).group_by(NodeChip.node).tuples())
        # (a Slurm node sharing this Podman has devices of its own, not under host_root)
        local = [node.id for node in nodes if node.url == self.local_url and not node.host_root]
        chips = list(NodeChip.select().where(NodeChip.node.in_(local) & NodeChip.present))
        held = dict(ReplicaChip.select(ReplicaChip.chip, ReplicaChip.replica)
                    .where(ReplicaChip.chip.in_([chip.id for chip in chips])).tuples())
        return nodes, replicas, held_on, held, chips

    def close(self):
        """End the threads; a read under way is not waited for. A round after it raises."""
        self.threads.shutdown(wait=False, cancel_futures=True)

    def _forget_all_but(self, urls):
        """Drop what is kept of nodes not at ``urls``: their backends, their reads once ended
        (one still under way keeps the node skipped should it come back), the local host's
        CPU reading."""
        self._backends = {url: b for url, b in self._backends.items() if url in urls}
        self._reading = {url: future for url, future in self._reading.items()
                         if url in urls or not future.done()}
        if self.local_url not in urls:  # the next share is of the rounds from its return
            self._last_cpu = None

    def _read(self, url, handles):
        """(HostUsage, {handle: ContainerUsage}) of one node; raises what the node raises."""
        backend = self._backends.setdefault(url, PodmanBackend(url, self.timeout))
        return backend.host_usage(), backend.usage(handles)

    def _read_chips(self, chips):
        """{NodeChip id: readings} of the local node's chips, each kind by its plugin."""
        by_kind = defaultdict(list)
        for row in chips:
            by_kind[row.kind].append(row)
        found = {}
        for kind, rows in by_kind.items():
            try:
                readings = plugin_for(kind).metrics(
                    [Chip(row.kind, row.index, row.device, row.card, row.driver) for row in rows],
                    self.host_root)
            except Exception:  # a broken driver of one kind leaves the others' readings
                log.exception("reading the %s chips failed", kind)
                continue
            found.update({row.id: readings[row.index] for row in rows if row.index in readings})
        return found

    def _rows(self, now, nodes, replicas, held_on, futures):
        """The NodeSample and ReplicaSample rows of the nodes that answered in time."""
        node_rows, replica_rows, seen, local_cpu = [], [], {}, {}
        for node in nodes:
            future = futures.get(node.id)
            if future is None:
                continue
            if not future.done():
                log.info("node %s gave no sample in %g s", node.name, self.deadline)
                continue
            try:
                host, usages = future.result()
            except Exception as error:
                log.info("node %s gave no sample: %s", node.name, error)
                continue
            local = node.url == self.local_url
            if local and not local_cpu:  # once a round: Slurm's nodes may share this host
                local_cpu["ratio"] = self._local_cpu()
            used, total = self._memory(host, local)
            node_rows.append({
                "node": node.id, "at": now, "chips_held": held_on[node.id],
                "cpu_ratio": local_cpu["ratio"] if local else None,
                "memory_total_bytes": total, "memory_used_bytes": used})
            for replica in replicas[node.id]:
                usage = usages.get(replica.container)
                if usage is None:
                    continue
                seen[replica.id] = usage
                replica_rows.append({"replica": replica.id, "at": now,
                                     "cpu_cores": cores(self._last_usage.get(replica.id), usage),
                                     "memory_bytes": usage.memory_bytes})
        # Keep the readings of replicas still running, on nodes that did not answer too.
        running = {replica.id for group in replicas.values() for replica in group}
        self._last_usage = {replica: usage for replica, usage in self._last_usage.items()
                            if replica in running} | seen
        return node_rows, replica_rows

    def _chip_rows(self, now, chips, held, future):
        if future is None or not future.done() or future.exception() is not None:
            return []
        return [{"chip": chip, "replica": held.get(chip), "at": now,
                 **{name: readings.get(name) for name in CHIP_READINGS}}
                for chip, readings in future.result().items()]

    def _memory(self, host, local):
        """(used, total) bytes of a node's memory: the local host's MemTotal - MemAvailable
        where its ``proc/meminfo`` can be read, else Podman's memTotal - memFree."""
        if local and (found := memory_now(self.host_root)) is not None:
            total, available = found
            return total - available, total
        if not host.memory_total_bytes:
            return None, None
        return host.memory_total_bytes - host.memory_free_bytes, host.memory_total_bytes

    def _local_cpu(self):
        """The share of the local host's CPU busy since the last call; None the first time."""
        before, self._last_cpu = self._last_cpu, cpu_times(self.host_root)
        return busy_share(before, self._last_cpu)


def busy_share(before, after):
    """The share (0 to 1) of CPU time busy between two ``cpu_times`` readings; None without
    both, or when no time passed between them."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return min(1.0, max(0.0, (after[0] - before[0]) / (after[1] - before[1])))


def cores(before, after):
    """CPU in cores between two readings of one container; None without a usable first one
    (none yet, or the container restarted and its counter began again)."""
    if before is None or after.at_ns <= before.at_ns or after.cpu_ns < before.cpu_ns:
        return None
    return (after.cpu_ns - before.cpu_ns) / (after.at_ns - before.at_ns)
