"""The sampling job on real Podman: a running replica, its node and its chip get samples, and
a node that does not answer never stops the others being sampled.

"near" is this host's node (the session's Podman behind a fault proxy, 3 fake BM1684X
chips and a ``proc/meminfo`` under a fake host root); "far" is another node, the same
Podman behind a second fault proxy, added once the task runs (so no pass of the scheduler
sees its containers twice). The test drives ``Sampler.run`` itself, as the leader's
``sampling`` job would.
"""

from dataclasses import dataclass

import pytest

from portal.models import ChipSample, Node, NodeSample, Replica, ReplicaChip, ReplicaSample, Task
from portal.specs import create_resource, parse_spec, save_spec
from portal.tasks import create_task
from portal.users import create_user
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from scheduler.sampling import Sampler
from tests.conftest import PASSWORD
from tests.fake_hosts import GIB, make_cpu_host, make_sophgo_host
from tests.fault_proxy import FaultProxy
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

BUSY = ["sh", "-c", "while :; do :; done"]  # one core's worth, capped at the spec's half


@dataclass
class Lab:
    sampler: Sampler
    near: Node
    far: Node
    far_proxy: FaultProxy
    replica: Replica

    def samples(self, model, **where):
        query = model.select().order_by(model.at, model.id)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return list(query)


@pytest.fixture
def lab(instance, podman_service, test_image, tmp_path, monkeypatch):
    """A task of one replica holding one chip, busy on "near"; then "far" is added."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)])
    make_cpu_host(host, mem_kib=16_000_000, available_kib=12_000_000)
    near, far = FaultProxy(podman_service.socket), FaultProxy(podman_service.socket)
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", near.url)
    monkeypatch.setenv("HOURGLASS_HOST_ROOT", str(host))
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(near.url, host_root=host, probe_image=test_image).run()
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec("tpu1", "0.5", "0.125", "1", {tpu: "1"}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    task = create_task(renter, "busy", test_image, BUSY, {}, "default", [("main", "tpu1", 1)])
    reconciler = Reconciler(near.url, host_root=host, grace=1)
    wait_for(lambda: reconciler.run() or Task.get_by_id(task.id).state == "running",
             timeout=30, what="the task to run")
    replica = Replica.get(Replica.task == task)
    far_node = Node.create(name="far", url=far.url, source="manual", ready=True)
    sampler = Sampler(near.url, host_root=host, timeout=5)  # a loaded test machine is slow
    yield Lab(sampler, Node.get(Node.source == "local"), far_node, far, replica)
    near.close()
    far.close()
    PodmanBackend(podman_service.url).remove(replica.container)
    ctx.pop()


def test_a_running_replica_its_node_and_its_chips_are_sampled(lab):
    lab.sampler.run()
    first = lab.samples(ReplicaSample, replica=lab.replica.id)
    assert len(first) == 1 and first[0].cpu_cores is None  # no reading before it yet
    wait_for(lambda: lab.sampler.run() and lab.samples(ReplicaSample, replica=lab.replica.id)
             [-1].cpu_cores, interval=1.0, what="a replica sample with CPU")
    rounds = len(lab.samples(NodeSample, node=lab.near.id))
    assert rounds >= 2
    replica_rows = lab.samples(ReplicaSample, replica=lab.replica.id)
    assert len(replica_rows) == rounds
    assert all(row.memory_bytes > 0 for row in replica_rows)
    # Cores, not a percent: the busy loop is capped at the spec's half core.
    assert 0 < replica_rows[-1].cpu_cores <= 1.0

    # The local node's memory is its proc/meminfo's, used without what the kernel can give
    # back (MemAvailable), as node-exporter's; another node's is what its Podman says.
    near_rows = lab.samples(NodeSample, node=lab.near.id)
    assert {(row.memory_used_bytes, row.memory_total_bytes) for row in near_rows} == {
        (4_000_000 * 1024, 16_000_000 * 1024)}
    far_rows = lab.samples(NodeSample, node=lab.far.id)
    assert len(far_rows) == rounds
    assert all(0 < row.memory_used_bytes < row.memory_total_bytes != 16_000_000 * 1024
               for row in far_rows)
    assert {row.chips_held for row in near_rows} == {1}
    assert {row.chips_held for row in far_rows} == {0}
    # The fake host root has no proc/stat: the local node's CPU share is not known.
    assert {row.cpu_ratio for row in near_rows} == {None}

    held = ReplicaChip.get(ReplicaChip.replica == lab.replica).chip
    chip_rows = lab.samples(ChipSample)
    assert len(chip_rows) == 3 * rounds
    for row in chip_rows:
        n = row.chip.index
        assert row.replica_id == (lab.replica.id if row.chip_id == held.id else None)
        assert (row.temp_c, row.power_w, row.util_ratio, row.memory_total_bytes) == (
            40 + n, 10 + n, n / 10, (n + 1 + 2 + 1) * GIB)
        assert row.memory_used_bytes is None  # the driver's files do not say it


@pytest.mark.parametrize("fault", ["hang", "refuse", "answer 500"])
def test_a_node_that_does_not_answer_never_stops_the_others_being_sampled(lab, fault):
    {"hang": lambda: lab.far_proxy.fault("hang"), "refuse": lab.far_proxy.down,
     "answer 500": lambda: lab.far_proxy.fault("error")}[fault]()
    for _ in range(2):
        lab.sampler.run()
    assert len(lab.samples(NodeSample, node=lab.near.id)) == 2
    assert len(lab.samples(ReplicaSample, replica=lab.replica.id)) == 2
    assert len(lab.samples(ChipSample)) == 3 * 2
    assert lab.samples(NodeSample, node=lab.far.id) == []
    lab.far_proxy.clear()
    lab.far_proxy.up()
    wait_for(lambda: lab.sampler.run() and lab.samples(NodeSample, node=lab.far.id),
             timeout=30, interval=0.5, what="the node to be sampled again")


def test_stats_leave_out_a_container_that_is_gone_or_not_running(lab):
    """Podman 4.3 answers no stats at all when one container asked is gone: the running
    replicas are then listed once and those asked for asked again, together (never one at a
    time: a hundred replicas would take the node past the round's deadline). A stopped one
    comes with zeros and is left out, so its replica (still running in the database until
    the next pass) gets no sample."""
    backend = PodmanBackend(lab.far.url)
    name = lab.replica.container
    found = backend.usage([name] + [f"hourglass-nothing-r{n}" for n in range(8)])
    assert list(found) == [name]
    assert found[name].cpu_ns > 0 and found[name].memory_bytes > 0
    assert lab.far_proxy.count("/containers/stats") == 2
    assert lab.far_proxy.count("/containers/json") == 1
    backend.stop(name, 0)
    assert backend.usage([name]) == {}
    lab.sampler.run()
    assert lab.samples(ReplicaSample) == []
    assert len(lab.samples(NodeSample, node=lab.near.id)) == 1
