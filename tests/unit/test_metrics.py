"""``/metrics`` on a real database: the gauges after rows the scheduler and the ledger would
write, who may read it, and Prometheus's own ``promtool`` on what it says."""

import shutil
import subprocess
from datetime import datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from portal import ledger
from portal.models import (
    LeaderLease,
    Node,
    NodeChip,
    Pool,
    Replica,
    ReplicaChip,
    ResourceSpec,
    Subtask,
    Task,
    User,
    utcnow,
)
from portal.money import MICRO

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


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_finds_no_problem(client, cluster):
    text = client.get("/metrics").get_data()
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
