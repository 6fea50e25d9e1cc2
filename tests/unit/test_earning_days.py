"""Earnings per day and month, node and spec (``EarningDay``, ``EarningMonth``) kept by
``portal.ledger`` beside its charges, and the Earnings page's sums read from them: the same
figures as a sum over the ledger's charges, for several nodes, specs and months, a
give-back, and removed nodes.

Charges are written by the real ``ledger.meter`` over replica rows standing for what the
scheduler saw (``test_miner_billing``'s world), on a real SQLite database.
"""

from datetime import timedelta

from portal import ledger, records
from portal.models import (
    EarningDay,
    EarningMonth,
    LedgerEntry,
    Node,
    Replica,
    ResourceSpec,
    User,
    utcnow,
)
from portal.money import MICRO
from portal.nodes import remove_node
from tests.unit import test_miner_billing as billing
from tests.unit.test_renter_billing import queries

world = billing.world
NS = billing.NS


def ledger_earnings():
    """``records.earnings()`` as it was before ``EarningDay``: one pass over the charges,
    summed per node and spec (a removed node's rows name none), names looked up."""
    start = records.month_start()
    by_node, by_spec = {}, {}
    for entry in LedgerEntry.select().where(LedgerEntry.kind == "charge"):
        this = -entry.amount if entry.at >= start else 0
        for totals, key in ((by_node, entry.node_id), (by_spec, entry.spec_id)):
            before = totals.get(key, (0, 0))
            totals[key] = (before[0] + this, before[1] - entry.amount)

    def named(totals, model):
        return sorted((records.Earning(model.get_by_id(key).name if key else None, *sums)
                       for key, sums in totals.items()),
                      key=lambda e: (-e.all_time, e.name or ""))

    return named(by_node, Node), named(by_spec, ResourceSpec)


def ledger_days():
    """{(day, node or 0, spec): charged} summed from the ledger's charges."""
    days = {}
    for entry in LedgerEntry.select().where(LedgerEntry.kind == "charge"):
        key = (entry.at.date(), entry.node_id or 0, entry.spec_id)
        days[key] = days.get(key, 0) - entry.amount
    return days


def stored_days():
    return {(d.day, d.node, d.spec): d.charged for d in EarningDay.select()}


def move(entries, day):
    """Move charge rows to ``day`` (noon), with their earnings, as if charged then."""
    for entry in entries:
        billing.move_earning(entry, day)
    LedgerEntry.update(at=utcnow().replace(year=day.year, month=day.month, day=day.day,
                                           hour=12)).where(
        LedgerEntry.id.in_([e.id for e in entries])).execute()


def test_each_charge_adds_to_its_day_node_and_spec_give_backs_too(app, world):
    with app.app_context():
        billing.run_replica(world["rene"], world["tpu"], world["n1"], 3600)  # 7.00
        billing.run_replica(world["ana"], world["tpu"], world["n1"], 1800, running=False)
        ran = billing.run_replica(world["rene"], world["cpu"], world["n2"], 3600)  # 2.00
        # It ended half an hour in, after it was charged an hour: settling gives 1.00 back.
        Replica.update(state="succeeded", finished_ns=Replica.started_ns + 1800 * NS).where(
            Replica.id == ran.id).execute()
        assert ledger.meter() == 1
        today = LedgerEntry.select().order_by(LedgerEntry.id.desc()).get().at.date()
        assert stored_days() == ledger_days() == {
            (today, world["n1"], world["tpu"]): 10_500_000,
            (today, world["n2"], world["cpu"]): MICRO}
        assert ledger.verify() == []


def test_earnings_read_from_the_days_equal_a_sum_over_the_ledger(app, world):
    with app.app_context():
        rene = User.get_by_id(world["rene"])
        spare = Node.create(name="n3", url="unix:///run/n3.sock")
        older = billing.run_replica(world["rene"], world["tpu"], world["n1"], 3600,
                                    running=False)
        last = billing.run_replica(world["ana"], world["cpu"], world["n2"], 7200, running=False)
        gone = billing.run_replica(world["rene"], world["cpu"], spare.id, 600, running=False)
        nowhere = billing.run_replica(world["ana"], world["tpu"], None, 60, running=False)
        running = billing.run_replica(world["rene"], world["tpu"], world["n2"], 900)
        Replica.update(last_seen_at=utcnow() + timedelta(seconds=300)).where(
            Replica.id == running.id).execute()
        assert ledger.meter() == 1  # a second charge of the running one
        first = records.month_start().date()
        move(list(older.charges), first - timedelta(days=40))  # two months ago
        move(list(last.charges), first - timedelta(days=1))  # last month
        move(list(gone.charges), first)  # this month's first day
        ledger.recharge(rene, 5 * MICRO, None)
        ledger.adjust(rene, MICRO, None, "not an earning", kind="refund")
        ledger.adjust(rene, -MICRO, None, "not an earning either")

        remove_node(Node.get_by_id(spare.id))
        Node.create(name="n4", url="unix:///run/n4.sock")  # SQLite may give it n3's id

        by_node, by_spec = records.earnings()
        assert (by_node, by_spec) == ledger_earnings()
        removed = [e for e in by_node if e.name is None]
        assert len(removed) == 1  # the removed node and the replica without one, merged
        assert removed[0].all_time == -sum(
            e.amount for e in LedgerEntry.select().where(
                LedgerEntry.replica.in_([gone.id, nowhere.id])))
        assert "n4" not in {e.name for e in by_node}
        assert [e.name for e in by_spec] == ["tpu", "cpu"]
        ten_minutes = ledger.cost(600, 2 * MICRO)  # n3's, this month at 2.00/h
        assert (by_spec[1].this_month, by_spec[1].all_time) == (ten_minutes,
                                                                4 * MICRO + ten_minutes)
        assert ledger.verify() == []


def test_verify_finds_earnings_that_drifted_from_the_charges(app, world):
    with app.app_context():
        billing.run_replica(world["rene"], world["tpu"], world["n1"], 3600)
        assert ledger.verify() == []
        EarningDay.update(charged=EarningDay.charged + 1).execute()
        assert ledger.verify() == [f"spec {world['tpu']}: daily earnings say 7000001 charged "
                                   f"but the ledger says 7000000"]
        EarningDay.update(charged=EarningDay.charged - 1).execute()
        EarningMonth.update(charged=EarningMonth.charged - 1).execute()
        assert ledger.verify() == [f"spec {world['tpu']}: monthly earnings say 6999999 charged "
                                   f"but the ledger says 7000000"]


def test_the_earnings_page_reads_no_ledger_row(app, client, world, caplog):
    with app.app_context():
        billing.run_replica(world["rene"], world["tpu"], world["n1"], 3600)
    billing.as_miner(client)
    queries(client, caplog, billing.PAGE + "/earnings")
    assert not [r for r in caplog.records if r.name == "peewee" and '"ledger"' in r.getMessage()]

