"""The maximum run time on real Podman: a busybox ``sleep 600`` task with a limit of one
"minute" (made 2 seconds through ``Reconciler(run_limit_minute=...)``), the leader's pass
(``Reconciler.run``) driven by the test.

It is stopped with the reason "max run time reached", on its replica too, and billed exactly
its container's seconds: price x ceil(FinishedAt - StartedAt), from ``podman inspect``.
A pool's cap stops a task that chose no limit of its own. The step's query runs on
PostgreSQL too.
"""

import time
from datetime import timedelta

import pytest

from portal import ledger
from portal.models import LedgerEntry, Node, Replica, Task, User
from portal.money import MICRO
from portal.pools import default_pool, set_pool_limits
from portal.reasons import RUN_TIME_REACHED
from portal.specs import parse_spec, save_spec
from portal.tasks import create_task
from scheduler.run_limits import stop_overdue
from tests.integration.test_billing import PER_SECOND, books, inspected_seconds, until  # noqa: F401
from tests.integration.test_postgres import bare_app, pg_accounts, pg_app  # noqa: F401

pytestmark = pytest.mark.podman

MINUTE = timedelta(seconds=2)


def sleeper(renter, image, **more):
    return create_task(renter, "sleeper", image, ["sleep", "600"], {}, "default",
                       [("main", "sec", 1)], **more)


def stopped_by_the_limit(reconciler, task):
    """Drive the pass until ``task`` stopped and its replica is settled; the replica."""
    ended = until(reconciler, lambda: (t := Task.get_by_id(task.id)).state == "stopped" and t,
                  "the maximum run time to stop it", timeout=40)
    assert ended.stop_reason == RUN_TIME_REACHED
    return until(reconciler, lambda: (r := Replica.get(Replica.task == task)).settled and r,
                 "the final charge")


def test_a_task_past_its_limit_stops_with_the_reason_and_is_billed_exactly(
        books, podman_service, test_image):  # noqa: F811 (the fixture)
    _app, rene, _rita, reconciler = books
    reconciler.run_limit_minute = MINUTE
    task = sleeper(rene, test_image, max_run_minutes=1)
    until(reconciler, lambda: Task.get_by_id(task.id).state == "running", "it to run")
    replica = stopped_by_the_limit(reconciler, task)
    assert replica.state == "stopped" and replica.reason == RUN_TIME_REACHED
    seconds = inspected_seconds(podman_service, replica)
    ran_ns = replica.finished_ns - replica.started_ns
    assert 2 * 10**9 <= ran_ns < 20 * 10**9  # stopped soon after its 2 s, not after 600
    assert seconds == ledger.billed_seconds(replica.started_ns, replica.finished_ns)
    total = -sum(row.amount for row in LedgerEntry.select().where(LedgerEntry.task == task))
    assert total == seconds * PER_SECOND * MICRO // 3600 == replica.charged
    assert ledger.verify() == []


def test_the_pools_cap_stops_a_task_without_a_limit_of_its_own(books, test_image):  # noqa: F811 (the fixture)
    _app, rene, _rita, reconciler = books
    reconciler.run_limit_minute = MINUTE
    set_pool_limits(default_pool(), max_run_minutes=1)
    task = sleeper(rene, test_image)
    assert task.max_run_minutes is None
    until(reconciler, lambda: Task.get_by_id(task.id).state == "running", "it to run")
    assert stopped_by_the_limit(reconciler, task).reason == RUN_TIME_REACHED


def test_without_any_limit_it_runs_on(books, test_image):  # noqa: F811 (the fixture)
    _app, rene, _rita, reconciler = books
    reconciler.run_limit_minute = timedelta(milliseconds=1)
    task = sleeper(rene, test_image)
    until(reconciler, lambda: Task.get_by_id(task.id).state == "running", "it to run")
    for _ in range(3):
        reconciler.run()
    assert not Task.get_by_id(task.id).stop_requested


@pytest.mark.postgres
def test_the_step_asks_the_same_on_postgresql(pg_app, pg_accounts):  # noqa: F811
    """The overdue query (a grouped subquery joined to tasks) on a real PostgreSQL."""
    with pg_app.app_context():
        node = Node.create(name="box", url="unix:///run/box.sock", cpu_millis=4000,
                           memory_mib=4096, ready=True)
        save_spec(None, parse_spec("sec", "0.5", "0.125", str(PER_SECOND), {}))
        task = create_task(User.get(User.name == "rene"), "t", "localhost/busybox",
                           ["sleep", "9"], {}, "default", [("main", "sec", 1)],
                           max_run_minutes=1)
        Replica.update(state="running", node=node, started_ns=time.time_ns() - 61 * 10**9
                       ).where(Replica.task == task).execute()
        set_pool_limits(default_pool(), max_run_minutes=5)
        assert stop_overdue() == [task.id]
        assert Task.get_by_id(task.id).stop_reason == RUN_TIME_REACHED
