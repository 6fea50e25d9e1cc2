"""The ledger on a real database: exact arithmetic, refusals, idempotent metering, verify.

Replicas here are rows with the container times the scheduler would have
written (their containers are simulated); ``tests/integration/test_billing.py``
runs the same code against real Podman containers.
"""

from datetime import timedelta

import pytest

from portal import ledger
from portal.models import LedgerEntry, Pool, Replica, ResourceSpec, Subtask, Task, User
from portal.money import MAX_MICRO, MICRO
from portal.users import create_user
from tests.conftest import PASSWORD

NS = 1_000_000_000
T0 = 1_795_000_000 * NS  # some moment in 2026, in ns


@pytest.fixture
def books(app, accounts):
    with app.app_context():
        spec = ResourceSpec.create(name="tpu", cpu_millis=1000, memory_mib=512,
                                   price_per_hour=7 * MICRO)  # 7 UNC an hour: not whole per s
        yield accounts["miner"], User.get_by_id(accounts["renter"].id), spec


def replica(user, spec, state="running", started=T0, finished=None, seen=None, price=None):
    """A replica row as the scheduler leaves it; ``seen`` is last-seen-alive in ns."""
    task = Task.create(user=user, name="t", image="busybox", pool=Pool.get(Pool.is_default),
                       state=state)
    subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
    seen_at = None if seen is None else ledger.EPOCH + timedelta(microseconds=seen // 1000)
    return Replica.create(task=task, subtask=subtask, index=0, state=state, started_ns=started,
                          finished_ns=finished, last_seen_at=seen_at,
                          price_per_hour=spec.price_per_hour if price is None else price)


def test_seconds_round_up_and_cost_rounds_up_to_the_micro_unit():
    assert ledger.billed_seconds(T0, T0) == 0
    assert ledger.billed_seconds(T0, T0 + 1) == 1
    assert ledger.billed_seconds(T0, T0 + NS) == 1
    assert ledger.billed_seconds(T0, T0 + NS + 1) == 2
    assert ledger.billed_seconds(T0 + 5, T0) == 0  # Podman's finished-before-started
    assert ledger.cost(1, 7 * MICRO) == 1945  # 7,000,000 / 3600 = 1944.44... -> 1945
    assert ledger.cost(3600, 7 * MICRO) == 7 * MICRO
    assert ledger.cost(0, 7 * MICRO) == 0


def test_recharge_and_adjust_refuse_bad_amounts_miners_and_missing_reasons(books):
    miner, renter, _spec = books
    start = renter.balance
    for amount in (0, -5, 1.5, "10"):
        with pytest.raises(ledger.LedgerError):
            ledger.recharge(renter, amount, miner)
    with pytest.raises(ledger.LedgerError):
        ledger.recharge(miner, MICRO, miner)  # a miner has no machine-time
    with pytest.raises(ledger.LedgerError):
        ledger.recharge(renter, MAX_MICRO, miner)  # beyond what a balance can hold
    with pytest.raises(ledger.LedgerError):
        ledger.adjust(renter, -MICRO, miner, "  ")  # a reason is required
    with pytest.raises(ledger.LedgerError):
        ledger.adjust(renter, -MICRO, miner, "oops", kind="refund")  # a refund credits
    assert User.get_by_id(renter.id).balance == start
    row = ledger.adjust(renter, -3 * MICRO, miner, "wrong recharge")
    assert (row.kind, row.amount, row.balance_after, row.actor_id) == (
        "adjust", -3 * MICRO, start - 3 * MICRO, miner.id)
    assert User.get_by_id(renter.id).balance == start - 3 * MICRO
    assert ledger.verify() == []


def test_meter_accrues_then_settles_and_the_rows_add_up_to_the_cost(books):
    _miner, renter, spec = books
    start = renter.balance
    running = replica(renter, spec, seen=T0 + 10 * NS + 1000)  # last seen: to the µs
    assert ledger.meter() == 1
    running = Replica.get_by_id(running.id)
    assert (running.billed_seconds, running.charged) == (11, ledger.cost(11, 7 * MICRO))
    assert ledger.meter() == 0  # nothing new was seen: nothing charged twice
    Replica.update(state="succeeded", finished_ns=T0 + 100 * NS + 5).where(
        Replica.id == running.id).execute()
    assert ledger.meter() == 1
    done = Replica.get_by_id(running.id)
    rows = list(LedgerEntry.select().where(LedgerEntry.replica == done.id)
                .order_by(LedgerEntry.id))
    assert [(r.seconds_from, r.seconds_to) for r in rows] == [(0, 11), (11, 101)]
    assert -sum(r.amount for r in rows) == ledger.cost(101, 7 * MICRO) == done.charged
    assert done.settled and ledger.meter() == 0
    assert User.get_by_id(renter.id).balance == start - done.charged == rows[-1].balance_after
    assert ledger.verify() == []


def test_a_lost_replica_is_charged_up_to_when_it_was_last_seen(books):
    _miner, renter, spec = books
    lost = replica(renter, spec, state="lost", seen=T0 + 42 * NS)
    never = replica(renter, spec, state="failed", started=None)
    ledger.meter()
    lost, never = Replica.get_by_id(lost.id), Replica.get_by_id(never.id)
    assert (lost.billed_seconds, lost.settled) == (42, True)
    assert (never.charged, never.settled) == (0, True)
    assert LedgerEntry.select().where(LedgerEntry.replica == never.id).count() == 0


def test_settling_gives_back_what_was_charged_past_the_containers_end(books):
    """A database from before "last seen running" was stamped before the engine was asked
    may hold a replica charged for a second after its container ended."""
    _miner, renter, spec = books
    start = renter.balance
    late = replica(renter, spec, seen=T0 + 123 * NS + 200_000)  # seen 0.2 ms past 123 s
    ledger.meter()
    assert Replica.get_by_id(late.id).billed_seconds == 124
    Replica.update(state="stopped", finished_ns=T0 + 122_900_000_000).where(
        Replica.id == late.id).execute()  # it had really ended at 122.9 s
    ledger.meter()
    late = Replica.get_by_id(late.id)
    assert (late.billed_seconds, late.charged, late.settled) == (
        123, ledger.cost(123, 7 * MICRO), True)
    back = LedgerEntry.select().where(LedgerEntry.replica == late.id).order_by(
        LedgerEntry.id.desc()).first()
    assert back.amount == ledger.cost(124, 7 * MICRO) - ledger.cost(123, 7 * MICRO) > 0
    assert back.kind == "charge" and back.seconds_to is None and "gave back 1 s" in back.note
    assert User.get_by_id(renter.id).balance == start - ledger.cost(123, 7 * MICRO)
    assert ledger.verify() == []
    assert ledger.meter() == 0  # settled: nothing more, ever


def test_a_tick_that_dies_halfway_charges_nothing_and_the_next_one_everything(
        books, monkeypatch):
    _miner, renter, spec = books
    start = renter.balance
    ids = [replica(renter, spec, seen=T0 + n * NS).id for n in (3, 4, 5)]

    def crash(*args, **kwargs):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(ledger, "_insert_charges", crash)
    with pytest.raises(RuntimeError):
        ledger.meter()  # balances were updated in the transaction, then it died
    assert User.get_by_id(renter.id).balance == start
    assert all(Replica.get_by_id(i).billed_seconds == 0 for i in ids)
    monkeypatch.undo()
    assert ledger.meter() == 3
    total = sum(ledger.cost(n, 7 * MICRO) for n in (3, 4, 5))
    assert User.get_by_id(renter.id).balance == start - total
    assert ledger.verify() == []


def test_meter_works_in_batches(books, monkeypatch):
    _miner, renter, spec = books
    monkeypatch.setattr(ledger, "BATCH", 2)
    for n in range(5):
        replica(renter, spec, seen=T0 + (n + 1) * NS)
    assert ledger.meter() == 5
    assert ledger.verify() == []


def test_verify_finds_a_tampered_balance_and_a_tampered_charge(books, runner):
    _miner, renter, spec = books
    done = replica(renter, spec, state="succeeded", finished=T0 + 9 * NS)
    ledger.meter()
    assert runner.invoke(args=["billing", "verify"]).exit_code == 0
    User.update(balance=User.balance + 1).where(User.id == renter.id).execute()
    LedgerEntry.update(amount=LedgerEntry.amount + 1).where(
        LedgerEntry.replica == done.id).execute()
    problems = ledger.verify()
    assert any(p.startswith("user rene: balance") for p in problems)
    assert any(p.startswith(f"replica {done.id}: charged") for p in problems)
    result = runner.invoke(args=["billing", "verify"])
    assert result.exit_code == 1 and f"replica {done.id}" in result.output


def test_the_recharge_command_credits_a_renter_and_refuses_bad_input(books, runner):
    _miner, renter, _spec = books
    start = renter.balance
    result = runner.invoke(args=["billing", "recharge", "rene", "12.5", "--note", "grant"])
    assert result.exit_code == 0, result.output
    assert User.get_by_id(renter.id).balance == start + 12_500_000
    row = LedgerEntry.select().order_by(LedgerEntry.id.desc()).get()
    assert (row.kind, row.note, row.actor_id) == ("recharge", "grant", None)
    for argv in (["rene", "-1"], ["rene", "abc"], ["rene", "0.0000001"], ["mina", "5"],
                 ["nobody", "5"]):
        result = runner.invoke(args=["billing", "recharge", *argv])
        assert result.exit_code != 0, argv
    assert User.get_by_id(renter.id).balance == start + 12_500_000


def test_a_start_is_refused_below_the_minimum_period(books):
    _miner, renter, _spec = books
    assert ledger.minimum_for(7 * MICRO) == -(-7 * MICRO * 10 // 60)
    assert ledger.start_refusal(renter, renter.balance) is None
    refusal = ledger.start_refusal(renter, renter.balance + 1)
    assert "does not cover 10 minutes" in refusal and "UNC" in refusal
    poor = create_user("poor", "renter", PASSWORD)
    assert ledger.start_refusal(poor, 0) is None  # free work needs nothing


def test_work_from_before_the_ledger_is_settled_unbilled_by_its_migration(instance):
    """Upgrading a database that already ran tasks: those replicas are settled, no price
    snapshot, no charge; ``verify`` is clean and metering charges nothing for them."""
    from app import create_app
    from portal import db

    app = create_app({"TESTING": True})
    with app.app_context():
        db.router().run("003_tasks")
        user = db.database.execute_sql(
            "INSERT INTO users (name, display_name, role, password_hash, active, "
            "session_nonce, created_at) VALUES ('old', '', 'renter', 'x', 1, 'n', "
            "'2026-01-01') RETURNING id").fetchone()[0]
        db.database.execute_sql(
            "INSERT INTO resource_specs (name, cpu_millis, memory_mib, price_per_hour, enabled, "
            "created_at) VALUES ('s', 1000, 512, 3600000000, 1, '2026-01-01')")
        db.database.execute_sql(
            "INSERT INTO tasks (user_id, kind, name, image, argv, env, pool_id, state, reason, "
            "submitted_at, stop_requested, deleted) VALUES (?, 'training', 't', 'i', '[]', "
            "'{}', 1, 'running', '', '2026-01-01', 0, 0)", (user,))
        db.database.execute_sql("INSERT INTO subtasks (task_id, role, spec_id, replicas) "
                                "VALUES (1, 'main', 1, 1)")
        db.database.execute_sql(
            "INSERT INTO replicas (task_id, subtask_id, \"index\", state, reason, container, "
            "started_ns, last_seen_at, created_at) VALUES (1, 1, 0, 'running', '', 'c', ?, "
            "'2026-01-01 00:10:00', '2026-01-01')", (T0,))
        db.upgrade()
        old = Replica.get_by_id(1)
        assert (old.settled, old.price_per_hour, old.charged) == (True, None, 0)
        assert ledger.meter() == 0 and ledger.verify() == []
    db.database.close()
