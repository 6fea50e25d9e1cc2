"""The running scheduler under load, on real Podman with a fake chip tree of 6 chips.

The real ``SchedulerService`` runs (APScheduler, leader lease, a 0.2 s tick,
woken by the portal's signal on every submission) while threads submit tasks
through ``portal.tasks`` each on its own database connection. Each fake chip
is a device node with its own minor number, so a container can tell which host
chip it got: ``ls -l /dev/bm-sophon0`` inside shows the host chip's numbers.
"""

import logging
import os
import re
import stat
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from portal.db import database
from portal.models import REPLICA_ENDED, Replica, ReplicaChip, ReplicaEvent, Task
from portal.pools import default_pool, set_pool_limits
from portal.specs import create_resource, parse_spec, save_spec
from portal.task_views import reason_text
from portal.tasks import create_task, request_stop
from portal.users import create_user
from scheduler import assign
from scheduler.podman import PodmanBackend
from tests.conftest import PASSWORD
from tests.fake_hosts import make_sophgo_host
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

CHIPS = 6
TASKS = 20
# Linux keeps character majors 60-63 and 120-127 for local use: no driver of this host has
# one, and nothing ever opens these nodes (a container only lists them).
LOCAL_MAJORS = (*range(60, 64), *range(120, 128))
DEVICE_LINE = re.compile(r"^c\S+\s+\d+\s+\S+\s+\S+\s+(\d+),\s*(\d+)\s.*/dev/bm-sophon0$", re.M)


def free_major():
    """A local-use character major that no driver of this host registered."""
    lines = Path("/proc/devices").read_text().split("Block devices:")[0].splitlines()
    taken = {int(line.split()[0]) for line in lines if line.strip()[:1].isdigit()}
    return next(major for major in LOCAL_MAJORS if major not in taken)


@pytest.fixture
def cloud(instance, podman_service, test_image, tmp_path, monkeypatch):
    """An app on a database with 6 distinguishable BM1684X chips (host chip n is device
    major:n), a 1-chip spec "tpu1" and two renters, rene and rita; its scheduler service
    (tick 0.2 s, stop grace 1 s) is not started (``scheduling`` starts it)."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)] * 2)
    major = free_major()
    for n in range(CHIPS):
        node = host / f"dev/bm-sophon{n}"
        node.unlink()
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, n))
        os.chmod(node, 0o666)
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    monkeypatch.setenv("HOURGLASS_HOST_ROOT", str(host))
    monkeypatch.setenv("HOURGLASS_TICK_SECONDS", "0.2")
    app = create_app({"TESTING": True})
    service = app.extensions["hourglass.scheduler"]
    service.reconciler.grace = 1
    with app.app_context():
        db.upgrade()
        service.discover_now()
        tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
        save_spec(None, parse_spec("tpu1", "0.1", "0.125", "1", {tpu: "1"}))
        renters = list(fund(*(create_user(name, "renter", PASSWORD) for name in ("rene", "rita"))))
    backend = PodmanBackend(podman_service.url)
    try:
        yield SimpleNamespace(app=app, renters=renters, backend=backend, major=major,
                              service=service)
    finally:
        with app.app_context():
            names = Replica.select(Replica.container).where(Replica.container != "").tuples()
            for (name,) in names:
                backend.remove(name)
        database.close()


@pytest.fixture
def scheduling(cloud):
    """``cloud`` with its scheduler service started, the leader."""
    cloud.service.start()  # after the migrations: the first heartbeat needs the lease table
    try:
        assert cloud.service.state == "leader"
        yield cloud
    finally:
        cloud.service.shutdown()


def submit(renter, image, argv, name):
    return create_task(renter, name, image, argv, {}, "default", [("main", "tpu1", 1)])


def states(app, task_ids):
    with app.app_context():
        return dict(Task.select(Task.id, Task.state).where(Task.id.in_(task_ids)).tuples())


def test_twenty_tasks_at_once_for_six_chips_never_share_a_chip(scheduling, test_image, caplog):
    cloud = scheduling
    caplog.set_level(logging.WARNING)
    renter = cloud.renters[0]
    argv = ["sh", "-c", "ls -l /dev/bm-sophon0; ls /dev; sleep 1"]
    barrier = threading.Barrier(TASKS)
    ids, failures = [], []

    def submit_one(n):
        try:
            with cloud.app.app_context(), database.connection_context():
                barrier.wait(timeout=10)
                ids.append(submit(renter, test_image, argv, f"stress-{n}").id)
        except Exception as error:  # reported below, with the others
            failures.append(repr(error))

    threads = [threading.Thread(target=submit_one, args=(n,)) for n in range(TASKS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == [] and len(ids) == TASKS

    wait_for(lambda: all(s in REPLICA_ENDED for s in states(cloud.app, ids).values()),
             timeout=60, interval=0.2, what="all 20 tasks to end")
    assert set(states(cloud.app, ids).values()) == {"succeeded"}

    with cloud.app.app_context():
        replicas = list(Replica.select().where(Replica.task.in_(ids)))
        events = {r.id: [e.state for e in ReplicaEvent.select().where(ReplicaEvent.replica == r)
                         .order_by(ReplicaEvent.id)] for r in replicas}
        assert ReplicaChip.select().count() == 0  # every chip given back
    assert len(replicas) == TASKS
    used = []  # (host chip, StartedAt ns, FinishedAt ns, replica id)
    for replica in replicas:
        # placed once, started once: the chip table never refused a placement
        assert events[replica.id] == ["pending", "starting", "running", "succeeded"] or \
            events[replica.id] == ["pending", "starting", "succeeded"], events[replica.id]
        out = "".join(cloud.backend.logs(replica.container))
        assert sorted(w for w in out.split() if w.startswith("bm-sophon")) == ["bm-sophon0"], out
        match = DEVICE_LINE.search(out)
        assert match, out
        major, minor = int(match.group(1)), int(match.group(2))
        assert major == cloud.major and 0 <= minor < CHIPS, out
        state = cloud.backend.inspect(replica.container)  # Podman's own times
        assert state.exit_code == 0 and state.started.ns < state.finished.ns
        assert (replica.started_ns, replica.finished_ns) == (state.started.ns, state.finished.ns)
        used.append((minor, state.started.ns, state.finished.ns, replica.id))

    for chip in range(CHIPS):
        runs = sorted(u for u in used if u[0] == chip)
        for before, after in zip(runs, runs[1:], strict=False):
            assert before[2] <= after[1], f"host chip {chip} held by replicas {before[3]} " \
                f"and {after[3]} at once"
    assert {u[0] for u in used} == set(range(CHIPS))  # the scheduler used every chip
    moments = sorted([(start, 1) for _c, start, _f, _r in used]
                     + [(finish, -1) for _c, _s, finish, _r in used])
    running = [sum(step for _t, step in moments[:i + 1]) for i in range(len(moments))]
    assert max(running) <= CHIPS

    trouble = [r.getMessage() for r in caplog.records
               if r.levelno >= logging.ERROR or "lost a race" in r.getMessage()]
    assert trouble == []


def test_a_renter_over_the_pool_chip_limit_waits_while_another_renter_runs(scheduling,
                                                                           test_image):
    cloud = scheduling
    rene, rita = cloud.renters
    argv = ["sleep", "60"]
    with cloud.app.app_context():
        set_pool_limits(default_pool(), max_chips_per_user=2)
        first, second, third = (submit(rene, test_image, argv, f"rene-{n}") for n in range(3))
        other = submit(rita, test_image, argv, "rita")
    running = [first.id, second.id, other.id]
    wait_for(lambda: all(s == "running" for s in states(cloud.app, running).values()),
             timeout=30, interval=0.2, what="rene's first two tasks and rita's to run")
    with cloud.app.app_context():
        waiting = Task.get_by_id(third.id)
        assert waiting.state == "pending"
        assert reason_text(waiting.reason) == (
            "over your chip limit in pool default (2 of 2 in use, this task needs 1)")
        assert ReplicaChip.select().count() == 3  # 3 chips free: only the limit holds it back
        request_stop(Task.get_by_id(first.id))
    wait_for(lambda: states(cloud.app, [third.id])[third.id] == "running", timeout=30,
             interval=0.2, what="rene's third task to run once the first stopped")
    with cloud.app.app_context():
        assert Task.get_by_id(first.id).state == "stopped"
        assert Task.get_by_id(third.id).reason == ""
        for task in (second, third, other):
            request_stop(Task.get_by_id(task.id))
    wait_for(lambda: set(states(cloud.app, running + [third.id]).values()) == {"stopped"},
             timeout=30, interval=0.2, what="every task to stop")


def test_a_stop_between_planning_and_storing_a_placement_holds_no_chip(cloud, test_image):
    """The renter stops a task (the portal stops its pending replicas at once) after the
    leader planned it and before the plan is stored: nothing of it is stored."""
    rene, rita = cloud.renters
    reconciler = cloud.service.reconciler
    with cloud.app.app_context():
        task = create_task(rene, "two", test_image, ["sleep", "60"], {}, "default",
                           [("main", "tpu1", 2)])
        plan = assign.plan()
        assert len(plan.assignments[task.id]) == 2
        request_stop(task)
        assign.apply(plan, reconciler.local_url, reconciler.peer_ports)
        assert ReplicaChip.select().count() == 0
        assert [r.state for r in Replica.select().where(Replica.task == task)] == [
            "stopped", "stopped"]
        assert Task.get_by_id(task.id).state == "stopped"
        # every chip is still free for the next task
        other = create_task(rita, "six", test_image, ["sleep", "60"], {}, "default",
                            [("main", "tpu1", CHIPS)])
        plan = assign.plan()
        assert sorted(plan.assignments) == [other.id] and not plan.pending
