"""The scheduler on real Podman with a fake chip tree: place, start, follow, stop, adopt.

Each test drives the leader's pass (``Reconciler.run``) itself, so what happens
is the real code path without waiting for APScheduler's timing.
"""

import json

import pytest
from werkzeug.exceptions import NotFound

from portal.models import Node, Replica, ReplicaChip, ReplicaEvent, Task, User
from portal.reasons import english
from portal.settings import instance_id
from portal.specs import create_resource, parse_spec, save_spec
from portal.task_views import reason_text
from portal.tasks import create_task, get_task_or_404, request_stop
from portal.users import create_user
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD
from tests.fake_hosts import make_sophgo_host
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman


@pytest.fixture
def cloud(instance, podman_service, test_image, tmp_path, monkeypatch):
    """An app whose local node has 6 fake BM1684X chips, a "TPU" spec of 1 chip, a renter."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)] * 2)
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    monkeypatch.setenv("HOURGLASS_HOST_ROOT", str(host))
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(podman_service.url, host_root=host).run()
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec("tpu1", "0.1", "0.125", "1", {tpu: "1"}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    reconciler = Reconciler(podman_service.url, host_root=host, grace=2)
    yield app, renter, reconciler, PodmanBackend(podman_service.url)
    for replica in Replica.select().where(Replica.container != ""):
        PodmanBackend(podman_service.url).remove(replica.container)
    ctx.pop()


def submit(renter, image, argv, subtasks, name="job"):
    return create_task(renter, name, image, argv, {"GREETING": "ni hao"}, "default", subtasks)


def settle(reconciler, task, states=("succeeded", "failed", "stopped", "lost"), timeout=30):
    def done():
        reconciler.run()
        return Task.get_by_id(task.id).state in states
    wait_for(done, timeout=timeout, interval=0.2, what=f"task {task.id} to reach {states}")
    return Task.get_by_id(task.id)


def output_of(backend, replica):
    return "".join(backend.logs(replica.container))


def test_a_two_subtask_task_sees_exactly_its_chips_limits_and_env(cloud, test_image):
    app, renter, reconciler, backend = cloud
    argv = ["sh", "-c", "ls /dev; echo RANK=$RANK WORLD=$WORLD_SIZE ROLE=$HOURGLASS_ROLE "
            "INDEX=$HOURGLASS_REPLICA_INDEX PEERS=$HOURGLASS_PEERS G=$GREETING; "
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true"]
    task = submit(renter, test_image, argv, [("chief", "tpu1", 1), ("worker", "tpu1", 2)])
    task = settle(reconciler, task)
    assert task.state == "succeeded", [(r.state, r.reason) for r in task.replicas]
    replicas = list(Replica.select().where(Replica.task == task).order_by(Replica.id))
    ranks = []
    for replica in replicas:
        out = output_of(backend, replica)
        devices = sorted(w for w in out.split() if w.startswith("bm-sophon"))
        assert devices == ["bm-sophon0"], out  # one chip each, always numbered 0 inside
        assert "bmdev-ctl" in out.split()
        assert "WORLD=3" in out and "G=ni hao" in out
        assert "PEERS=chief-0,worker-0,worker-1" in out
        assert "4096" in out.split()  # the pids limit
        ranks.append(out.split("RANK=")[1].split()[0])
        # <=: Podman 4.3 may stamp a container that ends at once as finished before it
        # started; the reconciler clamps that to a run of no time at all.
        assert replica.exit_code == 0 and replica.started_ns <= replica.finished_ns
        states = [e.state for e in ReplicaEvent.select().where(ReplicaEvent.replica == replica)
                  .order_by(ReplicaEvent.id)]
        assert states[0] == "pending" and states[-1] == "succeeded" and "starting" in states
    assert sorted(ranks) == ["0", "1", "2"]
    assert ReplicaChip.select().count() == 0  # every chip released


def test_exit_codes_decide_success_and_argv_is_never_a_shell(cloud, test_image):
    app, renter, reconciler, backend = cloud
    failing = settle(reconciler, submit(renter, test_image, ["sh", "-c", "exit 3"],
                                        [("main", "tpu1", 1)], name="fails"))
    assert failing.state == "failed"
    assert Replica.get(Replica.task == failing).exit_code == 3
    literal = settle(reconciler, submit(renter, test_image,
                                        ["echo", "$(id)", ";", "&&", "`id`"],
                                        [("main", "tpu1", 1)], name="literal"))
    assert literal.state == "succeeded"
    assert output_of(backend, Replica.get(Replica.task == literal)).strip() == "$(id) ; && `id`"


def test_gang_a_task_needing_more_chips_than_free_waits_and_holds_nothing(cloud, test_image):
    app, renter, reconciler, backend = cloud
    hog = submit(renter, test_image, ["sleep", "60"], [("main", "tpu1", 4)], name="hog")
    wait_for(lambda: reconciler.run() or Task.get_by_id(hog.id).state == "running",
             timeout=30, what="the 4-chip task to run")
    big = submit(renter, test_image, ["sh", "-c", "exit 0"], [("main", "tpu1", 3)], name="big")
    reconciler.run()
    big = Task.get_by_id(big.id)
    reason = reason_text(big.reason)
    assert big.state == "pending" and "waiting for 3 free TPU 1684X" in reason, reason
    assert ReplicaChip.select().join(Replica).where(Replica.task == big).count() == 0
    small = submit(renter, test_image, ["sh", "-c", "exit 0"], [("main", "tpu1", 2)],
                   name="small")
    small = settle(reconciler, small)
    assert small.state == "succeeded"  # the 2 free chips were not held by the waiting task
    request_stop(hog)
    hog = settle(reconciler, hog)
    assert hog.state == "stopped"
    assert settle(reconciler, big).state == "succeeded"


def test_a_restart_adopts_running_replicas_and_a_vanished_container_is_lost(cloud, test_image):
    app, renter, reconciler, backend = cloud
    task = submit(renter, test_image, ["sleep", "60"], [("main", "tpu1", 2)])
    wait_for(lambda: reconciler.run() or Task.get_by_id(task.id).state == "running",
             timeout=30, what="the task to run")
    first, second = Replica.select().where(Replica.task == task).order_by(Replica.id)
    # A new reconciler is what a restarted leader has: nothing in memory.
    again = Reconciler(reconciler.local_url, host_root=reconciler.host_root, grace=2)
    backend.remove(second.container)  # removed while "the app was down"
    again.run()
    assert Replica.get_by_id(first.id).state == "running"  # adopted, not started twice
    lost = Replica.get_by_id(second.id)
    assert lost.state == "lost" and "vanished" in english(lost.reason)
    assert len([c for c in backend.list_ours(instance_id()) if c.replica == first.id]) == 1
    request_stop(Task.get_by_id(task.id))
    assert settle(again, task).state in ("stopped", "lost")


def test_stop_before_start_and_another_renters_view(cloud, test_image):
    app, renter, reconciler, backend = cloud
    task = submit(renter, test_image, ["sleep", "60"], [("main", "tpu1", 1)])
    request_stop(task)
    reconciler.run()
    assert Task.get_by_id(task.id).state == "stopped"
    assert not any(c.replica for c in backend.list_ours(instance_id())
                   if c.replica in [r.id for r in task.replicas])
    other = create_user("mallory", "renter", PASSWORD)
    with pytest.raises(NotFound):
        get_task_or_404(User.get_by_id(other.id), task.id)
    assert json.loads(Node.get(Node.source == "local").images)
