"""The sampling job's arithmetic and its place in the scheduler, on a real database.

CPU from two readings (a host's ``/proc/stat``, a container's counters) and a host's memory,
counted as node-exporter counts them; the job running on the leader only with its failures
logged, and its threads ended with the service; a round over a node whose Podman refuses:
nothing of it is written, the chips of the local node still are; nodes gone from the list
forgotten. The job on real Podman is ``tests/integration/test_sampling.py``.
"""

import logging

import pytest

from portal.models import ChipSample, Node, NodeChip, NodeSample
from scheduler.accelerators.cpu import cpu_times, memory_now
from scheduler.backend import ContainerUsage
from scheduler.libpod import usage_of
from scheduler.podman import HostUsage
from scheduler.sampling import Sampler, busy_share, cores
from scheduler.service import SchedulerService
from tests.fake_hosts import make_cpu_host, make_sophgo_host

NS = 1_000_000_000
KIB = 1024
# /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice
STAT = "cpu  {} 0 {} {} {} 0 0 0 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1 2 3\n"


def test_cpu_times_and_the_share_busy_between_two_readings(tmp_path):
    (tmp_path / "proc").mkdir()
    stat = tmp_path / "proc/stat"
    stat.write_text(STAT.format(1000, 500, 8000, 100))
    before = cpu_times(tmp_path)
    assert before == (1600, 9600)  # guest is inside user; iowait is busy, as not idle
    stat.write_text(STAT.format(1300, 600, 8600, 300))
    after = cpu_times(tmp_path)
    # node-exporter's 1 - rate(idle): (1200 - 600 idle) / 1200, the waiting on disks in it
    assert busy_share(before, after) == 600 / 1200
    assert busy_share(None, after) is None and busy_share(after, after) is None
    stat.write_text("not a stat file\n")
    assert cpu_times(tmp_path) is None
    assert cpu_times(tmp_path / "elsewhere") is None


def test_memory_used_leaves_out_what_the_kernel_can_give_back(tmp_path):
    """The local host's used memory is MemTotal - MemAvailable, as node-exporter's: the page
    cache is not used. Another node's is Podman's memTotal - memFree (it knows no more)."""
    make_cpu_host(tmp_path, mem_kib=16_000_000, available_kib=12_000_000)
    assert memory_now(tmp_path) == (16_000_000 * KIB, 12_000_000 * KIB)
    sampler = Sampler("unix:///local.sock", host_root=tmp_path)
    podman = HostUsage(memory_total_bytes=16_000_000 * KIB, memory_free_bytes=1000 * KIB)
    assert sampler._memory(podman, local=True) == (4_000_000 * KIB, 16_000_000 * KIB)
    assert sampler._memory(podman, local=False) == (15_999_000 * KIB, 16_000_000 * KIB)
    assert sampler._memory(HostUsage(0, 0), local=False) == (None, None)
    (tmp_path / "proc/meminfo").write_text("MemTotal: 16000000 kB\nMemFree: 1000 kB\n")
    assert memory_now(tmp_path) is None  # a kernel before 3.14: Podman's figure then
    assert sampler._memory(podman, local=True) == (15_999_000 * KIB, 16_000_000 * KIB)
    assert memory_now(tmp_path / "elsewhere") is None


def test_cores_from_two_readings_of_a_container():
    first = ContainerUsage("c", cpu_ns=2 * NS, at_ns=100 * NS, memory_bytes=1)
    later = ContainerUsage("c", cpu_ns=5 * NS, at_ns=102 * NS, memory_bytes=1)
    assert cores(first, later) == 1.5
    assert cores(None, later) is None
    restarted = ContainerUsage("c", cpu_ns=NS, at_ns=104 * NS, memory_bytes=1)
    assert cores(later, restarted) is None  # its counter began again
    assert cores(later, later) is None


def test_a_libpod_stats_entry_reads_as_usage():
    entry = {"Name": "hourglass-ab12cd34-r7", "CPUNano": 1539829818,
             "SystemNano": 1796627627111700042, "MemUsage": 1839104, "CPU": 100.42}
    assert usage_of(entry) == ContainerUsage("hourglass-ab12cd34-r7", 1539829818,
                                             1796627627111700042, 1839104)


def test_sampling_runs_on_the_leader_only_and_a_failure_is_logged(app, monkeypatch, caplog):
    with app.app_context():
        sampler = Sampler("unix:///nowhere.sock")
        service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                                   sampler=sampler, sample_seconds=15)
        rounds = []
        monkeypatch.setattr(sampler, "run", lambda: rounds.append(1))
        service.sampling_job()  # not leader yet: nothing
        assert rounds == []
        service.heartbeat()
        service.sampling_job()
        assert rounds == [1]

        def broken():
            raise RuntimeError("a bug in sampling")
        monkeypatch.setattr(sampler, "run", broken)
        with caplog.at_level(logging.ERROR, logger="scheduler.service"):
            service.sampling_job()
        assert "sampling failed" in caplog.text


def test_a_node_whose_podman_refuses_gives_no_sample_but_the_local_chips_still_do(
        app, tmp_path):
    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 2)])
    url = f"unix://{tmp_path}/no-podman.sock"
    with app.app_context():
        node = Node.create(name="local", url=url, source="local", ready=True)
        for n in range(2):
            NodeChip.create(node=node, kind="sophgo.com/bm1684x", index=n, card=0,
                            device=str(host / f"dev/bm-sophon{n}"))
        Node.create(name="off", url="unix:///off.sock", ready=True, enabled=False)
        Node.create(name="down", url="unix:///down.sock", ready=False)
        assert Sampler(url, host_root=host, timeout=1).run() == 2
        assert NodeSample.select().count() == 0
        rows = {row.chip.index: row for row in ChipSample.select()}
        assert {n: (row.temp_c, row.util_ratio, row.replica) for n, row in rows.items()} == {
            0: (40.0, 0.0, None), 1: (41.0, 0.1, None)}


def test_nodes_gone_from_the_list_are_forgotten(app, tmp_path):
    """A node removed, disabled or no longer Ready leaves no backend nor read behind."""
    with app.app_context():
        nodes = [Node.create(name=name, url=f"unix://{tmp_path}/{name}.sock", ready=True)
                 for name in ("removed", "disabled", "down", "kept")]
        sampler = Sampler(f"unix://{tmp_path}/local.sock", timeout=1)
        sampler.run()
        assert set(sampler._backends) == set(sampler._reading) == {n.url for n in nodes}
        removed, disabled, down, kept = nodes
        removed.delete_instance()
        Node.update(enabled=False).where(Node.id == disabled.id).execute()
        Node.update(ready=False).where(Node.id == down.id).execute()
        sampler.run()
        assert set(sampler._backends) == set(sampler._reading) == {kept.url}


def test_the_service_shutdown_ends_the_samplers_threads(app, tmp_path):
    with app.app_context():
        Node.create(name="n", url=f"unix://{tmp_path}/n.sock", ready=True)
        sampler = Sampler(f"unix://{tmp_path}/local.sock", timeout=1)
        service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                                   sampler=sampler, sample_seconds=15)
        assert sampler.run() == 0  # the node does not answer, but it was asked
        service.shutdown()
        with pytest.raises(RuntimeError, match="shutdown"):
            sampler.run()
