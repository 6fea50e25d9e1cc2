"""One bad node, one bad container, never stops the pass: faults made real.

Two nodes on real Podman, each behind a fault proxy (``tests.fault_proxy``) that
can make its node hang, refuse connections, answer 500, drop or delay chosen
calls: "near" is this host's node (the session's Podman, 3 fake BM1684X chips
under a fake host root) and "far" another node (a test's own Podman). The
leader's pass (``Reconciler.run``) is driven by the test. Prices make amounts
read as seconds: 3600 UNC an hour is 1 UNC a second.
"""

import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import current_app

from portal import ledger
from portal.models import LedgerEntry, Node, NodeChip, Replica, ReplicaChip, Task
from portal.money import MICRO
from portal.reasons import english
from portal.settings import instance_id
from portal.specs import create_resource, parse_spec, save_spec
from portal.tasks import create_task, delete_task, request_stop
from portal.users import create_user
from scheduler.backend import ContainerSpec
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from scheduler.start import START_ATTEMPTS
from tests.conftest import PASSWORD
from tests.fake_hosts import make_sophgo_host
from tests.fault_proxy import FaultProxy
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

GRACE = 3  # seconds a node may stay silent before its replicas are lost
SLEEP = ["sleep", "600"]


@dataclass
class Cluster:
    renter: object
    reconciler: Reconciler
    near: FaultProxy
    far: FaultProxy
    near_engine: PodmanBackend  # the real services, past the proxies
    far_engine: PodmanBackend
    host: object
    image: str

    def node(self, name):
        return Node.get(Node.name == name)

    def submit(self, name, spec="small", argv=SLEEP, on="near", replicas=1):
        """A task placed on node ``on`` (the other is cordoned while it is placed)."""
        task = create_task(self.renter, name, self.image, argv, {}, "default",
                           [("main", spec, replicas)])
        Node.update(cordoned=Node.name != on).execute()
        try:
            self.run_until(lambda: Replica.select().where(
                (Replica.task == task) & (Replica.state == "pending")).count() == 0,
                f"task {name} placed on {on}")
        finally:
            Node.update(cordoned=False).execute()
        return task

    def run(self):
        """One pass; no step of it may fail, whatever the nodes do."""
        self.reconciler.run()
        assert self.reconciler.failed_steps == []

    def run_until(self, done, what, timeout=30):
        def check():
            self.run()
            return done()
        return wait_for(check, timeout=timeout, interval=0.1, what=what)

    def running(self, task):
        """``task`` once it runs."""
        self.run_until(lambda: Task.get_by_id(task.id).state == "running",
                       f"task {task.id} running")
        return Task.get_by_id(task.id)

    def charged(self, task):
        """What the task's replicas were charged so far, in UNC (seconds at 1 UNC/s)."""
        rows = LedgerEntry.select().where((LedgerEntry.task == task)
                                          & (LedgerEntry.kind == "charge"))
        return -sum(row.amount for row in rows) / MICRO

    def replica(self, task):
        return Replica.get(Replica.task == task)


@pytest.fixture
def cluster(instance, podman_service, own_podman_service, test_image, tmp_path, monkeypatch):
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)])
    near, far = FaultProxy(podman_service.socket), FaultProxy(own_podman_service.socket)
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", near.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Node.create(name="far", url=far.url, source="manual")
    Discovery(near.url, host_root=host, probe_image=test_image).run()
    nodes = list(Node.select())
    assert all(n.ready for n in nodes), [(n.name, n.reason) for n in nodes]
    Node.update(name="near").where(Node.source == "local").execute()
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec("small", "0.1", "0.03125", "3600", {}))
    save_spec(None, parse_spec("cheap", "0.02", "0.03125", "36", {}))
    save_spec(None, parse_spec("tpu1", "0.1", "0.03125", "3600", {tpu: "1"}))
    save_spec(None, parse_spec("tpu3", "0.1", "0.03125", "3600", {tpu: "3"}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    reconciler = Reconciler(near.url, host_root=host, grace=1, lost_after=GRACE,
                            engine_timeout=1, sweep_seconds=0)
    engines = PodmanBackend(podman_service.url), PodmanBackend(own_podman_service.url)
    yield Cluster(renter, reconciler, near, far, *engines, host, test_image)
    near.close()
    far.close()
    for replica in Replica.select(Replica, Node).join(Node).where(Replica.container != ""):
        engine = engines[1] if replica.node.name == "far" else engines[0]
        engine.remove(replica.container)
    ctx.pop()


@pytest.mark.parametrize("fault", ["hang", "refuse", "answer 500"])
def test_a_silent_node_never_stops_the_pass_and_its_replica_is_lost_after_the_grace(
        cluster, fault):
    here = cluster.running(cluster.submit("here", on="near"))
    there = cluster.running(cluster.submit("there", on="far"))
    {"hang": lambda: cluster.far.fault("hang"), "refuse": cluster.far.down,
     "answer 500": lambda: cluster.far.fault("error")}[fault]()
    last_seen = cluster.replica(there).last_seen_at
    passes = []  # (when a pass began, what "here" was charged after it)
    deadline = time.monotonic() + 30
    while cluster.replica(there).state != "lost" and time.monotonic() < deadline:
        began = time.monotonic()
        cluster.run()
        passes.append((began, cluster.charged(here)))
        time.sleep(0.3)
    # The healthy node's task was followed and charged on every pass all along: a pass
    # charges up to when it listed the node, so the charge keeps pace with the passes'
    # clock (within a second's rounding each end), however long a silent node makes them.
    assert Task.get_by_id(here.id).state == "running"
    assert len(passes) >= 2 and all(a[1] <= b[1] for a, b in zip(passes, passes[1:],
                                                                  strict=False)), passes
    assert passes[-1][1] - passes[0][1] >= passes[-1][0] - passes[0][0] - 2, passes
    lost = cluster.replica(there)
    assert lost.state == "lost" and "not answering since" in english(lost.reason), lost.reason
    # Billed to when it was last seen alive, not a second more.
    assert lost.settled and lost.last_seen_at == last_seen
    assert lost.charged == ledger.cost(
        ledger.billed_seconds(lost.started_ns, ledger.to_ns(last_seen)), lost.price_per_hour)
    assert ledger.verify() == []

    # The node answers again: the lost replica's container, which ran on unseen and
    # unbilled, is stopped.
    cluster.far.clear()
    cluster.far.up()
    cluster.run_until(lambda: cluster.far_engine.inspect(lost.container).status == "exited",
                      "the lost replica's container stopped")
    request_stop(Task.get_by_id(here.id))
    cluster.run_until(lambda: Task.get_by_id(here.id).state == "stopped", "the stop")
    assert ledger.verify() == []


def test_a_500_on_one_containers_inspect_stays_with_that_replica(cluster):
    cluster.reconciler.lost_after = timedelta(minutes=10)
    short = cluster.running(cluster.submit("short", argv=["sleep", "2"], on="far"))
    long = cluster.running(cluster.submit("long", on="far"))
    broken = cluster.replica(short)
    cluster.far.fault("error", f"/containers/{broken.container}/json")
    time.sleep(2.5)  # "short" has ended; its inspect answers 500 from now on
    before = cluster.charged(long)
    for _ in range(10):
        cluster.run()
        time.sleep(0.2)
    assert cluster.replica(short).state == "running"  # unknown, kept as it was...
    assert cluster.replica(short).charged <= cluster.replica(short).price_per_hour  # <= 1 s
    assert cluster.charged(long) >= before + 1  # ...while the others are followed and billed
    cluster.far.clear()
    ended = cluster.run_until(lambda: cluster.replica(short).state == "succeeded" and
                              cluster.replica(short), "the ended replica seen at last")
    assert ended.settled and ended.charged == ledger.cost(
        ledger.billed_seconds(ended.started_ns, ended.finished_ns), ended.price_per_hour)
    assert ledger.verify() == []


@pytest.mark.parametrize("call", ["create", "start"])
def test_a_create_or_start_that_times_out_but_happened_is_adopted(cluster, call):
    # The proxy holds Podman's answer past the backend's 1 s: the call happened.
    cluster.far.fault("delay_answer", rf"/containers/(create|[^/]+/{call})$"
                      if call == "start" else r"/containers/create", method="POST",
                      seconds=2.5, times=1)
    task = cluster.submit("slow", on="far")
    cluster.running(task)
    replica = cluster.replica(task)
    assert replica.state == "running" and replica.start_attempts <= 1
    ours = [c for c in cluster.far_engine.list_ours(instance_id()) if c.replica == replica.id]
    assert len(ours) == 1  # started once, nothing left beside it
    request_stop(task)
    cluster.run_until(lambda: Task.get_by_id(task.id).state == "stopped", "the stop")
    delete_task(Task.get_by_id(task.id))
    cluster.run_until(lambda: not [c for c in cluster.far_engine.list_ours(instance_id())
                                   if c.replica == replica.id], "its container removed")


def test_a_node_that_never_answers_a_start_fails_the_replica_after_the_tries(cluster):
    cluster.far.fault("drop", r"/containers/create", method="POST")
    task = cluster.submit("doomed", on="far")
    cluster.run_until(lambda: Task.get_by_id(task.id).state == "failed", "the replica failed")
    replica = cluster.replica(task)
    assert replica.start_attempts == START_ATTEMPTS - 1
    assert english(replica.reason).startswith(f"could not start: node far did not answer "
                                     f"{START_ATTEMPTS} tries"), replica.reason
    assert cluster.far.count(r"/containers/create", "POST") >= START_ATTEMPTS


def test_fifty_tasks_at_once_on_one_node_all_run(cluster):
    cluster.reconciler = Reconciler(cluster.near.url, host_root=cluster.host, grace=1,
                                    sweep_seconds=0)  # the engine's time as in production
    tasks = [create_task(cluster.renter, f"burst-{n}", cluster.image, SLEEP, {}, "default",
                         [("main", "cheap", 1)]) for n in range(50)]
    Node.update(cordoned=Node.name == "far").execute()
    ids = [t.id for t in tasks]
    cluster.run_until(lambda: Task.select().where(Task.id.in_(ids) & (Task.state == "running"))
                      .count() == 50, "50 tasks running", timeout=180)
    replicas = list(Replica.select().where(Replica.task.in_(ids)))
    assert all(r.state == "running" and r.start_attempts == 0 for r in replicas), \
        [(r.state, r.reason) for r in replicas if r.state != "running"]
    ours = [c.replica for c in cluster.near_engine.list_ours(instance_id())]
    assert sorted(ours) == sorted(r.id for r in replicas)  # one container each
    for task in tasks:
        request_stop(task)
    cluster.run_until(lambda: Task.select().where(Task.id.in_(ids) & (Task.state == "stopped"))
                      .count() == 50, "50 tasks stopped", timeout=120)
    assert ledger.verify() == []


# Traps SIGTERM and takes a while to end, so Podman reports it "stopping" meanwhile; the
# grace (1 s) sometimes runs out and SIGKILL ends it.
LINGER = ["sh", "-c", "trap 'sleep $LINGER; exit 143' TERM; while :; do sleep 0.05; done"]


def test_replicas_stopped_at_random_moments_are_never_charged_past_their_end(cluster):
    rng = random.Random(13)
    tasks = [create_task(cluster.renter, f"r{n}", cluster.image, LINGER,
                         {"LINGER": f"{rng.uniform(0, 1.6):.2f}"}, "default",
                         [("main", "small", 1)]) for n in range(12)]
    Node.update(cordoned=Node.name == "far").execute()
    ids = [t.id for t in tasks]
    samples = []  # (replica id, what its ledger rows add up to), after every pass

    def sample():
        rows = (LedgerEntry.select(LedgerEntry.replica, LedgerEntry.amount)
                .where(LedgerEntry.task.in_(ids)).tuples())
        sums = {}
        for replica_id, amount in rows:
            sums[replica_id] = sums.get(replica_id, 0) - amount
        samples.extend(sums.items())

    cluster.run_until(lambda: sample() or Task.select().where(
        Task.id.in_(ids) & (Task.state == "running")).count() == 12, "12 tasks running")
    # A slow engine: what a list or an inspect says reaches Hourglass 0.6 s later, when a
    # container said running may have ended already.
    cluster.near.fault("delay_answer", r"/containers/(json|[^/]+/json)", method="GET",
                       seconds=0.6)
    stops = [rng.uniform(0.5, 6) for _ in tasks]
    began, app, failures = time.monotonic(), current_app._get_current_object(), []

    def stopper():  # a renter clicking Stop while the scheduler works
        try:
            with app.app_context():
                for at, task in sorted(zip(stops, tasks, strict=True), key=lambda p: p[0]):
                    time.sleep(max(0.0, at - (time.monotonic() - began)))
                    request_stop(Task.get_by_id(task.id))
        except Exception as error:
            failures.append(error)

    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        cluster.run_until(lambda: failures or sample() or Task.select().where(
            Task.id.in_(ids) & (Task.state == "stopped")).count() == 12, "12 tasks stopped",
            timeout=60)
    finally:
        thread.join()
    assert not failures
    final = {r.id: r for r in Replica.select().where(Replica.task.in_(ids))}
    for replica_id, charged in samples:
        r = final[replica_id]
        end_cost = ledger.cost(ledger.billed_seconds(r.started_ns, r.finished_ns),
                               r.price_per_hour)
        assert charged <= end_cost, (replica_id, charged, end_cost)
    for r in final.values():
        assert r.settled and r.charged == ledger.cost(
            ledger.billed_seconds(r.started_ns, r.finished_ns), r.price_per_hour)
    assert ledger.verify() == []


def test_an_answer_that_arrives_after_the_end_never_bills_past_it(cluster):
    cluster.reconciler = Reconciler(cluster.near.url, host_root=cluster.host, grace=1)
    task = cluster.running(cluster.submit("late", on="near"))
    replica = cluster.replica(task)
    # Podman says "running" at once, but the answer reaches Hourglass 1.5 s later; the
    # container is killed meanwhile.
    cluster.near.fault("delay_answer", r"/containers/json", method="GET", seconds=1.5)
    asked = cluster.near.count(r"/containers/json")
    passing = threading.Thread(target=cluster.reconciler.run)
    passing.start()
    wait_for(lambda: cluster.near.count(r"/containers/json") > asked, what="the list asked")
    time.sleep(0.3)
    cluster.near_engine.stop(replica.container, 0)
    passing.join()
    charged = Replica.get_by_id(replica.id).charged
    cluster.near.clear()
    cluster.run_until(lambda: Task.get_by_id(task.id).state == "failed", "the kill seen")
    ended = Replica.get_by_id(replica.id)
    cost = ledger.cost(ledger.billed_seconds(ended.started_ns, ended.finished_ns),
                       ended.price_per_hour)
    assert charged <= cost and ended.charged == cost
    assert ledger.to_ns(ended.last_seen_at) <= ended.finished_ns
    assert ledger.verify() == []


def test_a_chip_missing_from_one_discovery_is_never_given_to_another(cluster):
    holder = cluster.running(cluster.submit("holder", spec="tpu1", on="near"))
    held = ReplicaChip.get(ReplicaChip.replica == cluster.replica(holder)).chip_id
    card = cluster.host / "proc/bmsophon/card0"
    card.rename(card.with_name("hidden"))  # a driver reload, for one discovery
    discovery = Discovery(cluster.near.url, host_root=cluster.host, probe_image=cluster.image)
    discovery.run()
    assert not NodeChip.get_by_id(held).present
    assert ReplicaChip.get(ReplicaChip.chip == held).replica_id == cluster.replica(holder).id
    card.with_name("hidden").rename(card)
    discovery.run()
    assert NodeChip.get_by_id(held).present
    greedy = create_task(cluster.renter, "greedy", cluster.image, SLEEP, {}, "default",
                         [("main", "tpu3", 1)])
    for _ in range(5):
        cluster.run()
    assert Task.get_by_id(greedy.id).state == "pending"  # 2 free chips, not the held one
    request_stop(holder)
    cluster.running(greedy)
    assert ReplicaChip.select().where(ReplicaChip.chip == held).count() == 1


def test_a_lost_replica_keeps_its_chip_until_its_container_is_confirmed_gone(cluster):
    holder = cluster.running(cluster.submit("holder", spec="tpu1", on="near"))
    replica = cluster.replica(holder)
    held = ReplicaChip.get(ReplicaChip.replica == replica).chip_id
    cluster.near.down()
    cluster.run_until(lambda: cluster.replica(holder).state == "lost", "the replica lost")
    greedy = create_task(cluster.renter, "greedy", cluster.image, SLEEP, {}, "default",
                         [("main", "tpu3", 1)])
    for _ in range(3):
        cluster.run()
    assert ReplicaChip.get(ReplicaChip.chip == held).replica_id == replica.id
    assert Task.get_by_id(greedy.id).state == "pending"
    cluster.near.up()
    cluster.running(greedy)  # the lost container was stopped, its chip released, then placed
    assert cluster.near_engine.inspect(replica.container).status == "exited"


def test_the_sweep_removes_what_no_live_replica_claims_and_nothing_else(cluster):
    kept = cluster.running(cluster.submit("kept", on="far"))
    ended = cluster.submit("ended", argv=["sh", "-c", "exit 0"], on="far")
    cluster.run_until(lambda: Task.get_by_id(ended.id).state == "succeeded", "ended")
    gone = cluster.running(cluster.submit("gone", on="far"))
    request_stop(gone)
    cluster.run_until(lambda: Task.get_by_id(gone.id).state == "stopped", "stopped")
    for proxy in (cluster.near, cluster.far):  # the two share one Podman state: both fail
        proxy.fault("error", r"/containers/[^/]+$", method="DELETE")  # removals fail
        proxy.fault("error", r"/networks/[^/]+$", method="DELETE")
    delete_task(Task.get_by_id(gone.id))
    cluster.run()  # its clean-up fails
    left = f"hourglass-{instance_id()}-r{cluster.replica(gone).id}"
    assert cluster.far_engine.inspect(left) is not None
    # A container of this instance for a replica that does not exist (a crash left it).
    stray = cluster.far_engine.start(_stray_spec(cluster.image))
    cluster.near.clear()
    cluster.far.clear()

    def names():
        return {c.handle for c in cluster.far_engine.list_ours(instance_id())}
    cluster.run_until(lambda: stray not in names() and left not in names(),
                      "the sweep to remove the leftovers")  # the removals run in the background
    assert {cluster.replica(kept).container, cluster.replica(ended).container} <= names()
    cluster.run_until(lambda: f"hourglass-{instance_id()}-t{gone.id}" not in
                      cluster.far_engine.list_networks(instance_id()), "its network removed")
    networks = cluster.far_engine.list_networks(instance_id())
    assert f"hourglass-{instance_id()}-t{kept.id}" in networks


def _stray_spec(image):
    return ContainerSpec(instance=instance_id(), replica=999_999, task=999_999, subtask=1,
                         user=1, image=image, argv=("sleep", "600"), cpu_millis=100,
                         memory_mib=16)
