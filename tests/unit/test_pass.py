"""The leader's pass as a whole: each step stands alone, and a pass says how long it took.

A real Reconciler and SchedulerService on a real database with no node to talk to; a
step that raises is made by a bug put in on purpose (the place step), since no real
input makes this code raise today.
"""

import logging

from portal import ledger
from portal.models import Pool, Replica, ResourceSpec, Subtask, Task, User, utcnow
from portal.money import MICRO
from scheduler.reconcile import Reconciler
from scheduler.service import SchedulerService

NS = 1_000_000_000


def running_replica(renter):
    spec = ResourceSpec.create(name="sec", cpu_millis=100, memory_mib=64,
                               price_per_hour=3600 * MICRO)
    task = Task.create(user=renter, name="t", image="busybox", pool=Pool.get(Pool.is_default),
                       state="running")
    subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
    now = ledger.to_ns(utcnow())
    return Replica.create(task=task, subtask=subtask, index=0, state="running",
                          started_ns=now - 30 * NS, last_seen_at=utcnow(),
                          price_per_hour=spec.price_per_hour)


def test_a_step_that_raises_is_logged_and_the_pass_still_meters(app, accounts, monkeypatch,
                                                                 caplog):
    with app.app_context():
        renter = User.get_by_id(accounts["renter"].id)
        replica = running_replica(renter)
        reconciler = Reconciler("unix:///nowhere.sock")

        def broken():
            raise RuntimeError("a bug in placement")
        monkeypatch.setattr(reconciler, "place", broken)
        with caplog.at_level(logging.ERROR, logger="scheduler.reconcile"):
            reconciler.run()
        assert reconciler.failed_steps == ["broken"]
        assert "scheduler step broken failed; the pass goes on" in caplog.text
        assert Replica.get_by_id(replica.id).billed_seconds >= 30  # metering ran after it
        assert ledger.verify() == []


def test_a_pass_logs_its_duration_and_warns_when_longer_than_the_tick(app, caplog):
    with app.app_context():
        service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                                   reconciler=Reconciler("unix:///nowhere.sock"))
        service.heartbeat()
        assert service.is_leader
        with caplog.at_level(logging.DEBUG, logger="scheduler.service"):
            service.tick()
        assert "scheduler pass took" in caplog.text and "longer than" not in caplog.text
        caplog.clear()
        service.tick_seconds = 0  # every pass is longer than that
        with caplog.at_level(logging.DEBUG, logger="scheduler.service"):
            service.tick()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "longer than the 0 s tick" in warnings[0].getMessage()


def test_housekeeping_runs_on_the_leader_only_and_a_failure_is_logged(app, caplog):
    ran = []

    def chores():
        ran.append(True)
        if len(ran) == 2:
            raise OSError("disk gone")

    with app.app_context():
        service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                                   housekeeping=chores)
        service.housekeeping_job()  # not leader yet: nothing
        assert ran == []
        service.heartbeat()
        service.housekeeping_job()
        with caplog.at_level(logging.ERROR, logger="scheduler.service"):
            service.housekeeping_job()
        assert ran == [True, True] and "housekeeping failed" in caplog.text
