"""A leader looking again at what it believed running, after a crash or a change behind it.

Kill -9 the whole server while replicas run, remove a container while it is
down, start it again: the new leader adopts what still runs and marks what
vanished ``lost``. That one is all real: ``flask --app app serve`` (gunicorn,
the scheduler on, the leader lease), the JSON API with API tokens, Podman,
SQLite, a fake chip tree. The others drive a fresh ``Reconciler`` (what a
restarted leader has: nothing in memory) in this process: a crash between
making a container and starting it, and a node removed under a running replica.
"""

import json
import re
import sqlite3
import subprocess
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from portal.models import Node, Replica, Task
from portal.reasons import english
from portal.settings import instance_id
from portal.specs import create_resource, parse_spec, save_spec
from portal.tasks import create_task
from portal.users import create_user
from scheduler import inventory
from scheduler.backend import container_name
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.podman_service import podman_env
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD
from tests.fake_hosts import make_sophgo_host
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

SEEN = re.compile(r"last seen alive (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")
# Ends at once on SIGTERM (code 143), so the stop at the end does not wait out a grace.
ARGV = ["sh", "-c", "trap 'exit 143' TERM; sleep 60 & wait"]


class Api:
    """The JSON API of a live server, as one user with an API token."""

    def __init__(self, server, token):
        self.server, self.headers = server, {"Authorization": f"Bearer {token}"}

    def __call__(self, method, path, status=200, **kwargs):
        response = requests.request(method, f"{self.server.url}/api/v1{path}",
                                    headers=self.headers, timeout=10, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


def podman(service, *argv):
    return subprocess.run(["podman", *argv], env=podman_env(service.conf), check=True,
                          capture_output=True, text=True).stdout


def containers(service, instance, label):
    """Ids of every container (running or not) of Hourglass instance ``instance`` carrying
    ``label`` (``key=value``): other test runs on the same Podman have replica 1 too."""
    return podman(service, "ps", "-a", "-q", "--no-trunc", "--filter",
                  f"label=hourglass.instance={instance}", "--filter", f"label={label}").split()


def instance_of(server):
    """The instance id a live server's database made for itself."""
    path = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT value FROM settings WHERE key = 'instance_id'").fetchone()[0]


def inspect(service, name):
    """(container id, StartedAt) of container ``name``."""
    found = json.loads(podman(service, "inspect", name))[0]
    return found["Id"], found["State"]["StartedAt"]


def replica(task, replica_id):
    return next(r for r in task["replicas"] if r["id"] == replica_id)


def naive_utc_now():
    return datetime.now(UTC).replace(tzinfo=None)


def test_kill_9_then_restart_adopts_the_survivor_and_loses_the_removed(
        live_server_factory, podman_service, test_image, tmp_path):
    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)] * 2)
    env = {"HOURGLASS_HOST_ROOT": str(host), "HOURGLASS_TICK_SECONDS": "0.5",
           "HOURGLASS_DISCOVERY_SECONDS": "1", "HOURGLASS_LEASE_SECONDS": "3"}
    first = live_server_factory(accounts=True, **env)
    miner = Api(first, first.flask("token", "create", "mina").stdout.strip())
    renter = Api(first, first.flask("token", "create", "rene").stdout.strip())
    first.start()
    servers, task_id = [first], None
    try:
        wait_for(lambda: any(n["ready"] and len(n["chips"]) == 6 for n in miner("GET", "/nodes")),
                 timeout=30, interval=0.2, what="discovery to find the 6 fake chips")
        miner("POST", "/resources", 201, json={"name": "TPU 1684X", "kind": "sophgo.com/bm1684x"})
        miner("POST", "/specs", 201, json={"name": "tpu1", "cpu": "0.1", "memory_gb": "0.125",
                                           "price": "1", "resources": {"TPU 1684X": 1}})
        task_id = renter("POST", "/tasks", 201, json={
            "name": "survivor", "image": test_image, "argv": ARGV, "pool": "default",
            "subtasks": [{"role": "main", "spec": "tpu1", "replicas": 2}]})["id"]
        task = wait_for(lambda: (t := renter("GET", f"/tasks/{task_id}"))["state"] == "running"
                        and all(r["state"] == "running" for r in t["replicas"]) and t,
                        timeout=30, interval=0.2, what="both replicas to run")
        kept, removed = sorted(task["replicas"], key=lambda r: r["id"])
        before = inspect(podman_service, first.container(kept["id"]))
        running_at = min(e["at"] for e in removed["events"] if e["state"] == "running")

        first.kill()  # SIGKILL to gunicorn's master and workers at once: no clean-up at all
        killed_at = naive_utc_now()
        podman(podman_service, "rm", "-f", "-t", "0", first.container(removed["id"]))

        second = live_server_factory(**env)
        servers.append(second.start())
        renter.server = second
        task = wait_for(lambda: (t := renter("GET", f"/tasks/{task_id}"))
                        and replica(t, removed["id"])["state"] == "lost" and t,
                        timeout=30, interval=0.2, what="the removed replica to be lost")
        lost = replica(task, removed["id"])
        assert "vanished" in lost["reason"], lost
        seen = datetime.strptime(SEEN.search(lost["reason"]).group(1), "%Y-%m-%d %H:%M:%S")
        assert datetime.strptime(running_at, "%Y-%m-%dT%H:%M:%SZ") <= seen <= killed_at
        assert [e["state"] for e in lost["events"]] == ["pending", "starting", "running", "lost"]

        for _ in range(4):  # a few of the new leader's passes: still nothing started twice
            adopted = replica(renter("GET", f"/tasks/{task_id}"), kept["id"])
            assert adopted["state"] == "running", adopted
            assert adopted["started_ns"] == kept["started_ns"]
            assert [e["state"] for e in adopted["events"]] == ["pending", "starting", "running"]
            assert inspect(podman_service, first.container(kept["id"])) == before
            ours = instance_of(second)
            assert len(containers(podman_service, ours, f"hourglass.replica={kept['id']}")) == 1
            assert containers(podman_service, ours, f"hourglass.replica={removed['id']}") == []
            assert containers(podman_service, ours, f"hourglass.task={task_id}") == [before[0]]
            time.sleep(0.5)
        assert second.health()["scheduler"]["state"] == "leader"
        assert renter("GET", f"/tasks/{task_id}")["state"] == "running"

        renter("POST", f"/tasks/{task_id}/stop")
        task = wait_for(lambda: (t := renter("GET", f"/tasks/{task_id}"))
                        and replica(t, kept["id"])["state"] == "stopped" and t,
                        timeout=15, interval=0.2, what="the adopted replica to stop")
        assert task["state"] == "lost"  # one replica lost, the other stopped
    except BaseException:
        for server in servers:  # printed output is shown for a failed test only
            print(f"--- log of the server on {server.url} ---\n{server.log()}")
        raise
    finally:
        if task_id is not None:
            leftovers = containers(podman_service, instance_of(first), f"hourglass.task={task_id}")
            if leftovers:
                podman(podman_service, "rm", "-f", "-t", "0", *leftovers)


# --- a fresh leader in this process ----------------------------------------------------------


@pytest.fixture
def leader(instance, podman_service, test_image, tmp_path, monkeypatch):
    """An app on a node with 6 fake chips, the spec "tpu1", the renter rene, and a
    ``Reconciler`` with nothing in memory; the containers it made are removed at the end."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)] * 2)
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    backend = PodmanBackend(podman_service.url)
    with app.app_context():
        db.upgrade()
        Discovery(podman_service.url, host_root=host).run()
        tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
        save_spec(None, parse_spec("tpu1", "0.1", "0.125", "1", {tpu: "1"}))
        renter = fund(create_user("rene", "renter", PASSWORD))
        try:
            yield renter, lambda: Reconciler(podman_service.url, host_root=host, grace=1)
        finally:
            for (name,) in Replica.select(Replica.container).where(
                    Replica.container != "").tuples():
                backend.remove(name)
        db.database.close()


def submit(renter, image, argv):
    return create_task(renter, "job", image, argv, {}, "default", [("main", "tpu1", 1)])


def run_until(reconciler, task, states, what):
    def reached():
        reconciler.run()
        return Task.get_by_id(task.id).state in states
    wait_for(reached, timeout=20, interval=0.2, what=what)
    return Replica.get(Replica.task == task)


def test_a_container_made_but_never_started_before_a_crash_is_started_once(
        leader, podman_service, test_image):
    renter, new_leader = leader
    task = submit(renter, test_image, ["sh", "-c", "echo started; sleep 1"])
    new_leader().place()  # placed, chips held; then the crash, between create and start:
    replica = Replica.get(Replica.task == task)
    assert replica.state == "starting" and replica.container == ""
    podman(podman_service, "create", "--name", container_name(instance_id(), replica.id),
           "--label", f"hourglass.instance={instance_id()}",
           "--label", f"hourglass.replica={replica.id}", test_image, "sleep", "60")
    replica = run_until(new_leader(), task, ("succeeded", "failed", "lost"),
                        "the replica to run and end")
    assert (replica.state, replica.exit_code) == ("succeeded", 0), replica.reason
    assert len(containers(podman_service, instance_id(), f"hourglass.replica={replica.id}")) == 1
    logs = podman(podman_service, "logs", container_name(instance_id(), replica.id))
    assert logs.split() == ["started"]


def test_a_replica_whose_node_was_removed_is_lost_and_frees_its_place(leader, test_image):
    renter, new_leader = leader
    reconciler = new_leader()
    task = submit(renter, test_image, ["sleep", "60"])
    replica = run_until(reconciler, task, ("running",), "the replica to run")
    # What the Nodes page's remove does to a node (here the local node stands in for one).
    Node.get_by_id(replica.node_id).delete_instance(recursive=True)
    assert Replica.get_by_id(replica.id).node_id is None
    new_leader().run()
    lost = Replica.get_by_id(replica.id)
    assert lost.state == "lost" and Task.get_by_id(task.id).state == "lost"
    seen = f"{replica.last_seen_at:%Y-%m-%d %H:%M:%S} UTC"
    reason = english(lost.reason)
    assert "its node was removed" in reason and seen in reason, reason
    usage, _limits = inventory.usage_and_limits(inventory.spec_needs())
    assert usage == {}  # no longer counted against the renter's limits
