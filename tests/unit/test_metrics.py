"""``/metrics`` on a real database: the gauges after rows the scheduler, the sampling job
and the ledger would write, the histograms the scheduler observes (one process, and
prometheus_client's multiprocess mode as ``serve`` uses it), who may read it, and
Prometheus's own ``promtool`` on what it says. A small real HTTP server stands in for
JupyterLab (``tests.unit.test_culling.lab``)."""

import os
import shutil
import subprocess
import threading
from datetime import datetime, timedelta

import pytest
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from portal import ledger, metrics
from portal.models import (
    ChipSample,
    LeaderLease,
    Node,
    NodeChip,
    Pool,
    Replica,
    ReplicaChip,
    ReplicaSample,
    ResourceSpec,
    Subtask,
    Task,
    User,
    utcnow,
)
from portal.money import MICRO
from scheduler import notebook_starts
from scheduler.notebook_starts import NotebookStarts
from scheduler.reconcile import Reconciler
from scheduler.service import SchedulerService
from tests.support import wait_for
from tests.unit import test_notebooks as notebooks
from tests.unit.test_culling import lab  # noqa: F401 (the fixture)
from tests.unit.test_tasks import set_state, world  # noqa: F401 (the fixture)

TOKEN = "scrape-token-0123456789abcdef"
NS = 1_000_000_000
T0 = 1_795_000_000 * NS
ELSEWHERE = {"REMOTE_ADDR": "192.0.2.7"}


@pytest.fixture
def app(app):
    app.config["METRICS_TOKEN"] = TOKEN
    return app


@pytest.fixture
def cluster(app, accounts):
    """Two nodes (one NotReady, in pool "gpu"), chips, replicas in several states (one
    running on two chips, two pending for ten minutes, one succeeded), a scheduler leader."""
    with app.app_context():
        gpu = Pool.create(name="gpu")
        a = Node.create(name="a", url="unix:///a.sock", ready=True)
        b = Node.create(name="b", url="ssh://root@10.0.0.2/p.sock", ready=False, pool=gpu)
        chips = [NodeChip.create(node=a, kind="sophgo.com/bm1684x", index=i,
                                 device=f"/dev/bm-sophon{i}") for i in range(3)]
        NodeChip.create(node=a, kind="sophgo.com/bm1684x", index=3, device="/dev/x",
                        present=False)  # gone at the last discovery: not counted
        NodeChip.create(node=b, kind="nvidia.com/gpu", index=0, device="/dev/nvidia0")
        renter = User.get_by_id(accounts["renter"].id)
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=512,
                                   price_per_hour=36 * MICRO)
        task = Task.create(user=renter, name="t", image="busybox",
                           pool=Pool.get(Pool.is_default), state="running")
        subtask = Subtask.insert(task=task, role="main", spec=spec, count=4).execute()
        states = ["running", "pending", "pending", "succeeded"]
        replicas = [Replica.create(task=task, subtask=subtask, index=i, state=state,
                                   created_at=utcnow() - timedelta(minutes=10))
                    for i, state in enumerate(states)]
        running = replicas[0]
        for slot, chip in enumerate(chips[:2]):
            ReplicaChip.create(replica=running, chip=chip, slot=slot)
        Replica.update(node=a, started_ns=T0, price_per_hour=36 * MICRO,
                       last_seen_at=ledger.EPOCH + timedelta(seconds=T0 // NS + 100)
                       ).where(Replica.id == running.id).execute()
        ledger.meter()  # 100 s at 36 an hour: 1.000000 charged
        LeaderLease.create(name="scheduler", holder="h:1:x", last_tick_at=utcnow(),
                           expires_at=utcnow() + timedelta(seconds=15))
    return renter


def samples(response):
    """{(name, labels as a sorted tuple): value} of a scrape."""
    text = response.get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_gauges_say_what_the_database_holds(client, cluster):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    got = samples(response)
    assert [got["hourglass_replicas", (("state", s),)] for s in
            ("pending", "starting", "running", "succeeded", "failed")] == [2, 0, 1, 1, 0]
    assert got["hourglass_pending_replicas", (("pool", "default"),)] == 2
    assert 595 < got["hourglass_pending_oldest_seconds", (("pool", "default"),)] < 700
    assert got["hourglass_node_ready", (("node", "a"), ("pool", "default"))] == 1
    assert got["hourglass_node_ready", (("node", "b"), ("pool", "gpu"))] == 0
    bm = (("kind", "sophgo.com/bm1684x"), ("node", "a"), ("pool", "default"))
    nv = (("kind", "nvidia.com/gpu"), ("node", "b"), ("pool", "gpu"))
    assert [got[name, bm] for name in ("hourglass_chips", "hourglass_chips_held",
                                       "hourglass_chips_free")] == [3, 2, 1]
    assert [got[name, nv] for name in ("hourglass_chips", "hourglass_chips_held",
                                       "hourglass_chips_free")] == [1, 0, 1]
    assert got["hourglass_charged_microunits", ()] == MICRO  # 100 s at 36 an hour
    # the ``fund`` recharge of the renter (1000 units)
    assert got["hourglass_recharged_microunits", ()] == 1000 * MICRO


def test_the_scheduler_lease_says_whether_a_leader_ticks(client, app):
    got = samples(client.get("/metrics"))
    assert got["hourglass_scheduler_leader", ()] == 0
    assert ("hourglass_scheduler_last_tick_timestamp_seconds", ()) not in got
    tick = utcnow() - timedelta(seconds=3)
    with app.app_context():
        LeaderLease.create(name="scheduler", holder="h:1:x", last_tick_at=tick,
                           expires_at=utcnow() + timedelta(seconds=15))
    got = samples(client.get("/metrics"))
    assert got["hourglass_scheduler_leader", ()] == 1
    assert got["hourglass_scheduler_last_tick_timestamp_seconds", ()] == pytest.approx(
        (tick - datetime(1970, 1, 1)).total_seconds())
    with app.app_context():
        LeaderLease.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert samples(client.get("/metrics"))["hourglass_scheduler_leader", ()] == 0


def test_a_disabled_node_and_an_empty_database_say_nothing_false(client, app):
    with app.app_context():
        node = Node.create(name="off", url="unix:///off.sock", enabled=False, ready=True)
        NodeChip.create(node=node, kind="k", index=0, device="/dev/k0")
    got = samples(client.get("/metrics"))
    assert not [key for key in got if ("node", "off") in key[1]]
    assert got["hourglass_replicas", (("state", "running"),)] == 0
    assert got["hourglass_charged_microunits", ()] == 0


def test_only_a_token_or_loopback_reads_it(client, app):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base=ELSEWHERE)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"hourglass_" not in refused.data
    ok = client.get("/metrics", environ_base=ELSEWHERE,
                    headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN):
        # a wrong token is refused even from loopback
        assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 401
    app.config["METRICS_LOOPBACK"] = False
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code \
        == 200
    app.config["METRICS_TOKEN"] = ""  # no token set: no header opens it
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_it_needs_no_sign_in_and_answers_get_only(client):
    assert client.get("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


@pytest.fixture
def sampled(app, cluster):
    """Samples as the sampling job writes them: the running replica's (an older one, the
    latest, and one of the pending replica that is not running), the chips' (one free with
    some readings, one held with all, one stale)."""
    now = utcnow()
    with app.app_context():
        running, waiting = (Replica.select().where(Replica.state == state).first()
                            for state in ("running", "pending"))
        ReplicaSample.create(replica=running, at=now - timedelta(seconds=15), cpu_cores=0.5,
                             memory_bytes=100)
        ReplicaSample.create(replica=running, at=now, cpu_cores=1.5, memory_bytes=2 * 2**30)
        ReplicaSample.create(replica=waiting, at=now, cpu_cores=9.0, memory_bytes=9)
        a0, a1, a2 = NodeChip.select().where(NodeChip.kind == "sophgo.com/bm1684x"
                                             ).order_by(NodeChip.index)[:3]
        ChipSample.create(chip=a0, replica=running, at=now - timedelta(seconds=15),
                          util_ratio=0.1)
        ChipSample.create(chip=a0, replica=running, at=now, util_ratio=0.75,
                          memory_used_bytes=3 * 2**30, memory_total_bytes=12 * 2**30,
                          temp_c=61.0, power_w=25.5)
        ChipSample.create(chip=a2, at=now, util_ratio=0.0, memory_total_bytes=12 * 2**30)
        ChipSample.create(chip=a1, replica=running, at=now - timedelta(hours=1),
                          util_ratio=0.9, temp_c=70.0)  # the sampling job stopped reading it
        return running


def test_replicas_and_chips_are_their_latest_samples(client, sampled):
    got = samples(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}))
    holder = f"{sampled.task_id}/main/0"
    replica = (("node", "a"), ("replica", holder), ("task", str(sampled.task_id)))
    assert got["hourglass_replica_cpu_cores", replica] == 1.5
    assert got["hourglass_replica_memory_bytes", replica] == 2 * 2**30
    # the pending replica's sample is no running replica's
    assert [k for k in got if k[0].startswith("hourglass_replica_")] == [
        ("hourglass_replica_cpu_cores", replica), ("hourglass_replica_memory_bytes", replica)]

    def chip(index, replica=""):
        return (("chip", str(index)), ("kind", "sophgo.com/bm1684x"), ("node", "a"),
                ("replica", replica))

    read = {(k[0], k[1]): v for k, v in got.items() if k[0].startswith("hourglass_chip_")}
    assert read == {
        ("hourglass_chip_utilization_ratio", chip(0, holder)): 0.75,
        ("hourglass_chip_memory_used_bytes", chip(0, holder)): 3 * 2**30,
        ("hourglass_chip_memory_total_bytes", chip(0, holder)): 12 * 2**30,
        ("hourglass_chip_temperature_celsius", chip(0, holder)): 61.0,
        ("hourglass_chip_power_watts", chip(0, holder)): 25.5,
        # a free chip, only what its plugin could read; a stale one says nothing
        ("hourglass_chip_utilization_ratio", chip(2)): 0.0,
        ("hourglass_chip_memory_total_bytes", chip(2)): 12 * 2**30,
    }


def test_an_ended_replica_or_a_disabled_node_has_no_readings(client, app, sampled):
    with app.app_context():
        Replica.update(state="succeeded").where(Replica.id == sampled.id).execute()
        Node.update(enabled=False).where(Node.name == "a").execute()
    got = samples(client.get("/metrics"))
    assert not [k for k in got if k[0].startswith(("hourglass_replica_", "hourglass_chip_"))]


def histogram(got, name, labels=()):
    """(count, sum, {upper bound: count}) of histogram ``name`` in a scrape."""
    buckets = {float(dict(k[1])["le"]): v for k, v in got.items()
               if k[0] == f"{name}_bucket" and set(labels) <= set(k[1])}
    return got[f"{name}_count", labels], got[f"{name}_sum", labels], buckets


def test_a_scheduler_pass_is_timed(client, app):
    timings = app.extensions["hourglass.timings"]
    with app.app_context():
        service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                                   reconciler=Reconciler("unix:///nowhere.sock"),
                                   timings=timings)
        service.heartbeat()
        service.tick()
        service.tick()
        service.lease.release()
    count, total, buckets = histogram(samples(client.get("/metrics")),
                                      "hourglass_scheduler_pass_seconds")
    assert count == 2 and total > 0
    assert sorted(buckets) == [*metrics.PASS_BUCKETS, float("inf")]
    assert buckets[float("inf")] == 2


def notebook_runs(count):
    """``count`` notebook runs of rene's submitted a minute ago, their replicas starting."""
    runs = []
    for number in range(count):
        run = Task.get(Task.notebook == notebooks.make(name=f"lab{number}"))
        Task.update(submitted_at=utcnow() - timedelta(minutes=1)).where(
            Task.id == run.id).execute()
        set_state(run, "starting")
        runs.append(Task.get_by_id(run.id))
    return runs


@pytest.fixture
def notebook_run(app, world, lab):  # noqa: F811 (the fixture)
    """A notebook run of rene's submitted a minute ago, its replica starting; its JupyterLab
    the fake one, which answers once ``lab.token`` is the run's."""
    with app.app_context():
        yield notebook_runs(1)[0]


@pytest.fixture
def starts(app):
    """The notebook starts' steps, timing into the app's histogram; stopped after the test."""
    starts = NotebookStarts(app.extensions["hourglass.timings"].notebook_start)
    yield starts
    starts.stop()


def waiters():
    """The threads waiting for JupyterLabs to answer."""
    return [t for t in threading.enumerate() if t.name.startswith("notebook-start")]


def timed(client):
    return histogram(samples(client.get("/metrics")), "hourglass_notebook_start_seconds")


def test_a_notebook_is_timed_from_submission_to_jupyterlab_answering(
        app, client, notebook_run, lab, starts):  # noqa: F811 (the fixture)
    with app.app_context():
        starts.note_waiting()
        starts.await_jupyter()  # still starting: nothing to wait for yet
        assert waiters() == []
        starts.note_waiting()
        set_state(notebook_run, "running", address=lab.address)  # the pass started it
        starts.await_jupyter()
    # JupyterLab does not answer yet (a wrong token): not timed
    wait_for(lambda: lab.seen, what="JupyterLab asked")
    assert timed(client)[0] == 0
    lab.token = notebook_run.secret
    wait_for(lambda: timed(client)[0] == 1, what="the run timed")
    count, total, buckets = timed(client)
    assert total >= 60 and buckets[30.0] == 0 and buckets[float("inf")] == 1
    wait_for(lambda: waiters() == [], what="the waiter gone: nothing left to poll")
    # a later pass finds it running, not waiting: it is timed once
    with app.app_context():
        starts.note_waiting()
        starts.await_jupyter()
    assert timed(client)[0] == 1 and waiters() == []


def test_a_run_running_before_the_pass_saw_it_wait_is_not_timed(
        app, client, notebook_run, lab, starts):  # noqa: F811 (the fixture)
    lab.token = notebook_run.secret
    with app.app_context():
        set_state(notebook_run, "running", address=lab.address)  # e.g. a new leader
        starts.note_waiting()
        starts.await_jupyter()
    assert timed(client)[0] == 0 and lab.seen == [] and waiters() == []


def test_a_run_seen_running_without_an_address_is_timed_once_it_has_one(
        app, client, notebook_run, lab, starts):  # noqa: F811 (the fixture)
    lab.token = notebook_run.secret
    with app.app_context():
        starts.note_waiting()
        set_state(notebook_run, "running", address="")  # the engine gave no address yet
        starts.await_jupyter()
        assert waiters() == []
        starts.note_waiting()  # a later pass: no longer waiting, still to time
        set_state(notebook_run, "running", address=lab.address)
        starts.await_jupyter()
    wait_for(lambda: timed(client)[0] == 1, what="the run timed")


def test_one_waiter_polls_a_burst_of_runs(app, client, world, lab, starts):  # noqa: F811
    with app.app_context():
        runs = notebook_runs(3)
        starts.note_waiting()
        for run in runs:
            set_state(run, "running", address=lab.address)
        starts.await_jupyter()
    wait_for(lambda: len({path for path, _auth in lab.seen}) == 3, what="all three asked")
    assert len(waiters()) == 1
    lab.token = runs[0].secret  # the labs answer each run's own token only
    wait_for(lambda: timed(client)[0] == 1, what="the first run timed")
    assert len(waiters()) == 1
    for count, run in enumerate(runs[1:], start=2):
        lab.token = run.secret
        wait_for(lambda count=count: timed(client)[0] == count, what="the next run timed")
    wait_for(lambda: waiters() == [], what="the waiter gone: nothing left to poll")


def test_the_waiter_drops_a_run_that_ended_between_passes(
        app, client, notebook_run, lab, starts, monkeypatch):  # noqa: F811 (the fixture)
    monkeypatch.setattr(notebook_starts, "REREAD_SECONDS", 0.2)
    with app.app_context():
        starts.note_waiting()
        set_state(notebook_run, "running", address=lab.address)
        starts.await_jupyter()
        wait_for(lambda: lab.seen, what="JupyterLab asked")
        set_state(notebook_run, "stopped")  # the renter stopped it; no pass ran since
    wait_for(lambda: waiters() == [], what="the waiter gone: it read the run ended")
    lab.token = notebook_run.secret
    with app.app_context():
        starts.note_waiting()
        starts.await_jupyter()
    assert timed(client)[0] == 0 and waiters() == []


def test_a_run_whose_jupyterlab_never_answers_is_given_up(
        app, client, notebook_run, lab, starts, monkeypatch):  # noqa: F811 (the fixture)
    monkeypatch.setattr(notebook_starts, "REREAD_SECONDS", 0.2)
    with app.app_context():
        starts.note_waiting()
        set_state(notebook_run, "running", address=lab.address)
        starts.await_jupyter()
        wait_for(lambda: lab.seen, what="JupyterLab asked")
        monkeypatch.setattr(notebook_starts, "GIVE_UP_SECONDS", 0)
    wait_for(lambda: waiters() == [], what="the waiter gone: the run given up")
    lab.token = notebook_run.secret
    with app.app_context():
        starts.note_waiting()
        starts.await_jupyter()
    assert timed(client)[0] == 0 and waiters() == []


def steal_the_lease():
    LeaderLease.update(holder="elsewhere:1:other", expires_at=utcnow() + timedelta(hours=1)
                       ).execute()


@pytest.mark.parametrize("stop", ["lease lost at a heartbeat", "lease lost at a tick",
                                  "shutdown"])
def test_the_waiter_ends_when_the_service_stops_leading(
        app, client, notebook_run, lab, stop):  # noqa: F811 (the fixture)
    timings = app.extensions["hourglass.timings"]
    reconciler = Reconciler("unix:///nowhere.sock", timings=timings)
    service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                               reconciler=reconciler, timings=timings)
    starts = reconciler.notebook_starts
    try:
        with app.app_context():
            service.heartbeat()
            assert service.is_leader
            starts.note_waiting()
            set_state(notebook_run, "running", address=lab.address)
            starts.await_jupyter()
            wait_for(lambda: lab.seen, what="JupyterLab asked")
            assert len(waiters()) == 1
            if stop == "shutdown":
                service.shutdown()
            else:
                steal_the_lease()
                service.heartbeat() if stop.endswith("heartbeat") else service.tick()
            assert not service.is_leader and waiters() == []
            lab.token = notebook_run.secret
            if stop != "shutdown":  # the new leader's passes
                LeaderLease.delete().execute()
                service.heartbeat()
                starts.note_waiting()
                starts.await_jupyter()
        assert timed(client)[0] == 0 and waiters() == []
    finally:
        starts.stop()


def test_multiprocess_mode_sums_the_files_of_every_process(app, monkeypatch, tmp_path):
    """What ``serve`` does before its workers start; the switch is undone after the test."""
    from app import create_app

    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    folder = tmp_path / "prometheus-multiproc"
    folder.mkdir()
    (folder / "histogram_1.db").write_bytes(b"left by the last run")
    metrics.use_multiprocess(folder)
    assert [f.name for f in folder.iterdir()] == []  # emptied
    first, second = create_app({"TESTING": True}), create_app({"TESTING": True})
    first.extensions["hourglass.timings"].scheduler_pass.observe(0.02)
    first.extensions["hourglass.timings"].queue_wait.labels("gpu").observe(7)
    assert sorted(f.name for f in folder.iterdir()) == [f"histogram_{os.getpid()}.db"]
    got = samples(second.test_client().get("/metrics"))  # another app reads the files
    assert histogram(got, "hourglass_scheduler_pass_seconds")[:2] == (1, 0.02)
    count, total, buckets = histogram(got, "hourglass_queue_wait_seconds", (("pool", "gpu"),))
    assert (count, total, buckets[5.0], buckets[10.0]) == (1, 7, 0, 1)
    assert got["hourglass_replicas", (("state", "running"),)] == 0  # the gauges as ever


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_finds_no_problem(client, app, sampled):
    timings = app.extensions["hourglass.timings"]
    timings.queue_wait.labels("default").observe(12)
    timings.scheduler_pass.observe(0.03)
    timings.notebook_start.observe(14)
    text = client.get("/metrics").get_data()
    names = {f.name for f in text_string_to_metric_families(text.decode())}
    assert {"hourglass_queue_wait_seconds", "hourglass_scheduler_pass_seconds",
            "hourglass_notebook_start_seconds", "hourglass_replica_cpu_cores",
            "hourglass_chip_power_watts"} <= names
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout + check.stderr == b""


def test_the_settings_refuse_a_guessable_token(instance, monkeypatch):
    from portal.config import ConfigError, from_environment

    settings = from_environment(instance)
    assert (settings["METRICS_TOKEN"], settings["METRICS_LOOPBACK"]) == ("", True)
    for weak in ("short", "password", "x" * 15):
        monkeypatch.setenv("HOURGLASS_METRICS_TOKEN", weak)
        with pytest.raises(ConfigError, match="HOURGLASS_METRICS_TOKEN"):
            from_environment(instance)
    monkeypatch.setenv("HOURGLASS_METRICS_TOKEN", f" {TOKEN} ")
    monkeypatch.setenv("HOURGLASS_METRICS_LOOPBACK", "off")
    settings = from_environment(instance)
    assert (settings["METRICS_TOKEN"], settings["METRICS_LOOPBACK"]) == (TOKEN, False)
