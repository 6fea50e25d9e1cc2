"""Billing on real Podman: charges to the second from the containers' own times.

Each test drives the leader's pass (``Reconciler.run``: refresh, then
``ledger.meter``, then the balance check) itself. Prices are per machine-hour;
3600 UNC an hour is 1 UNC (1,000,000 micro-units) a second, so amounts read
as seconds.
"""

import json
import subprocess
import threading

import pytest

from portal import ledger
from portal.db import database
from portal.models import LedgerEntry, Replica, ResourceSpec, Task, User
from portal.money import MICRO
from portal.reasons import BALANCE_EXHAUSTED
from portal.specs import parse_spec, save_spec
from portal.task_input import TaskError
from portal.tasks import create_task
from portal.users import create_user
from scheduler.backend import Timestamp
from scheduler.discovery import Discovery
from scheduler.podman_service import podman_env
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

PER_SECOND = 3600  # UNC an hour: 1 UNC a second


@pytest.fixture
def books(instance, podman_service, monkeypatch):
    """An app on the session's Podman with specs "sec" (1 UNC/s) and "half" (0.5 UNC/s)
    and two renters with 1000 UNC each."""
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(podman_service.url).run()
    save_spec(None, parse_spec("sec", "0.5", "0.125", str(PER_SECOND), {}))
    save_spec(None, parse_spec("half", "0.5", "0.125", str(PER_SECOND // 2), {}))
    rene, rita = fund(create_user("rene", "renter", PASSWORD),
                      create_user("rita", "renter", PASSWORD))
    reconciler = Reconciler(podman_service.url, grace=1)
    yield app, rene, rita, reconciler
    for (name,) in Replica.select(Replica.container).where(Replica.container != "").tuples():
        subprocess.run(["podman", "rm", "-f", "-t", "0", name],
                       env=podman_env(podman_service.conf), capture_output=True)
    ctx.pop()


def submit(renter, image, argv, subtasks, name="job"):
    return create_task(renter, name, image, argv, {}, "default", subtasks)


def inspected_seconds(service, replica):
    """ceil(FinishedAt - StartedAt) from ``podman inspect``, in whole seconds."""
    found = json.loads(subprocess.run(
        ["podman", "inspect", replica.container], env=podman_env(service.conf), check=True,
        capture_output=True, text=True).stdout)[0]["State"]
    return ledger.billed_seconds(Timestamp.parse(found["StartedAt"]).ns,
                                 Timestamp.parse(found["FinishedAt"]).ns)


def until(reconciler, done, what, timeout=30):
    def check():
        reconciler.run()
        return done()
    return wait_for(check, timeout=timeout, interval=0.3, what=what)


def charges(replica):
    return list(LedgerEntry.select().where(LedgerEntry.replica == replica.id)
                .order_by(LedgerEntry.id))


def test_a_run_across_ticks_and_a_restart_is_charged_exactly_its_container_seconds(
        books, podman_service, test_image):
    app, rene, _rita, reconciler = books
    before = User.get_by_id(rene.id).balance
    task = submit(rene, test_image, ["sleep", "3.5"], [("main", "sec", 1)])
    replica = until(reconciler, lambda: (r := Replica.get(Replica.task == task)).state ==
                    "running" and r, "the replica to run")
    until(reconciler, lambda: Replica.get_by_id(replica.id).billed_seconds >= 1,
          "a first charge while it runs")
    live = User.get_by_id(rene.id).balance
    assert live < before  # the balance is live while it runs
    # A new price applies to replicas started after it, not to this one.
    ResourceSpec.update(price_per_hour=PER_SECOND * 100 * MICRO).where(
        ResourceSpec.name == "sec").execute()
    # The leader restarts: a new reconciler, nothing in memory.
    again = Reconciler(reconciler.local_url, grace=1)
    replica = until(again, lambda: (r := Replica.get_by_id(replica.id)).settled and r,
                    "the replica to end and be settled")
    assert replica.state == "succeeded"
    seconds = inspected_seconds(podman_service, replica)
    assert seconds == ledger.billed_seconds(replica.started_ns, replica.finished_ns) >= 4
    rows = charges(replica)
    assert len(rows) >= 2  # accrued while it ran, then the final charge
    assert sum(-row.amount for row in rows) == seconds * MICRO == replica.charged
    assert [row.seconds_from for row in rows] == [0] + [row.seconds_to for row in rows[:-1]]
    assert rows[-1].seconds_to == seconds
    assert {(row.price_per_hour, row.task_id) for row in rows} == {(PER_SECOND * MICRO,
                                                                    task.id)}
    assert User.get_by_id(rene.id).balance == before - seconds * MICRO
    assert rows[-1].balance_after == User.get_by_id(rene.id).balance
    for _ in range(3):  # more passes charge nothing more
        again.run()
    assert len(charges(replica)) == len(rows)
    assert ledger.verify() == []


def test_sums_per_task_subtask_and_renter_follow_the_formula(books, test_image):
    app, rene, rita, reconciler = books
    start = {u.id: User.get_by_id(u.id).balance for u in (rene, rita)}
    two = submit(rene, test_image, ["sleep", "1.2"], [("a", "sec", 1), ("b", "half", 1)])
    one = submit(rita, test_image, ["sleep", "2.2"], [("main", "half", 1)])
    until(reconciler, lambda: Replica.select().where(~Replica.settled).count() == 0,
          "every replica to be settled")
    expected = {}
    for replica in Replica.select():
        assert replica.state == "succeeded", replica.reason
        price = replica.subtask.spec.price_per_hour
        assert replica.price_per_hour == price  # the snapshot at placement
        cost = ledger.cost(ledger.billed_seconds(replica.started_ns, replica.finished_ns), price)
        assert sum(-row.amount for row in charges(replica)) == cost == replica.charged
        expected[replica.task_id] = expected.get(replica.task_id, 0) + cost
        subtask_rows = LedgerEntry.select().where(LedgerEntry.replica == replica.id)
        assert all(row.spec_id == replica.subtask.spec_id for row in subtask_rows)
    for task in (two, one):
        billed = -sum(row.amount for row in LedgerEntry.select().where(LedgerEntry.task == task))
        assert billed == expected[task.id] > 0
    assert start[rene.id] - User.get_by_id(rene.id).balance == expected[two.id]
    assert start[rita.id] - User.get_by_id(rita.id).balance == expected[one.id]
    assert ledger.verify() == []


def test_an_exhausted_balance_stops_the_renters_work_within_a_tick(books, test_image):
    app, _rene, _rita, reconciler = books
    poor = fund(create_user("poor", "renter", PASSWORD), amount="3")
    # 10 minutes of "sec" cost 600 UNC: no minimum, so 3 UNC (3 seconds) may start it
    from portal import settings
    settings.put("min_start_minutes", "0")
    task = submit(poor, test_image, ["sleep", "120"], [("main", "sec", 1)])
    until(reconciler, lambda: Task.get_by_id(task.id).state == "running", "it to run")
    ended = until(reconciler, lambda: (t := Task.get_by_id(task.id)).state == "stopped" and t,
                  "the exhausted balance to stop it", timeout=40)
    replica = Replica.get(Replica.task == task)
    assert ended.stop_reason == BALANCE_EXHAUSTED and replica.reason == BALANCE_EXHAUSTED
    until(reconciler, lambda: Replica.get_by_id(replica.id).settled, "the final charge")
    replica = Replica.get_by_id(replica.id)
    seconds = ledger.billed_seconds(replica.started_ns, replica.finished_ns)
    balance = User.get_by_id(poor.id).balance
    assert balance == 3 * MICRO - seconds * MICRO <= 0
    # below zero by no more than about one tick of spend: a pass every 0.3 s here, the
    # SIGTERM's way out, and both ends rounded up to whole seconds
    assert seconds <= 3 + 2
    assert ledger.verify() == []


def test_a_start_needs_the_minimum_period_and_a_waiting_task_waits_for_money(
        books, test_image):
    app, _rene, _rita, reconciler = books
    broke = create_user("broke", "renter", PASSWORD)
    with pytest.raises(TaskError) as refused:
        submit(broke, test_image, ["sleep", "1"], [("main", "sec", 1)])
    assert "does not cover 10 minutes" in str(refused.value)
    assert Task.select().where(Task.user == broke.id).count() == 0
    fund(broke, amount="600")  # exactly 10 minutes of 1 UNC/s
    task = submit(broke, test_image, ["sleep", "1"], [("main", "sec", 1)])
    # The balance falls below the minimum before the scheduler places it: it waits.
    ledger.adjust(User.get_by_id(broke.id), -1, None, "test: one micro-unit less")
    reconciler.run()
    waiting = Task.get_by_id(task.id)
    assert waiting.state == "pending" and '"balance_low"' in waiting.reason
    assert Replica.get(Replica.task == task).price_per_hour is None
    fund(broke, amount="1")
    until(reconciler, lambda: Task.get_by_id(task.id).state == "succeeded", "it to run")


def test_recharges_during_metering_keep_the_books_exact(books, test_image):
    app, rene, _rita, reconciler = books
    task = submit(rene, test_image, ["sleep", "3"], [("main", "half", 2)])
    until(reconciler, lambda: Task.get_by_id(task.id).state == "running", "it to run")
    miner = create_user("mina", "miner", PASSWORD)
    errors = []

    def recharge_many():
        try:
            with database.connection_context():
                for _ in range(40):
                    ledger.recharge(User.get_by_id(rene.id), 1, miner, "top-up")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=recharge_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    until(reconciler, lambda: Replica.select().where(
        (Replica.task == task) & ~Replica.settled).count() == 0, "both to be settled")
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert LedgerEntry.select().where(LedgerEntry.kind == "recharge",
                                      LedgerEntry.actor == miner.id).count() == 120
    assert ledger.verify() == []
