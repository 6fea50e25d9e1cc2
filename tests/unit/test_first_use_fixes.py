"""What a new user tripped on (issue 16): groups on the New user form, the miner's records
grouped by replica, reasons in the reader's language, a notebook's console link, pools that
can run a spec."""

import html
import logging
import re
from datetime import timedelta

import pytest
from peewee import fn

from portal import ledger
from portal.models import Group, LedgerEntry, Membership, Replica, User, utcnow
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_miner_billing as billing

world = billing.world  # the fixture: renters rene and ana, specs tpu and cpu, nodes n1, n2


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/miner/users")})


def test_the_new_user_form_says_there_is_no_group_yet(miner):
    page = miner.get("/miner/users").get_data(as_text=True)
    assert 'id="new-user-groups"' in page and 'id="no-group-yet"' in page
    post(miner, "/miner/groups", **{"group-name": "lab-a"})
    page = miner.get("/miner/users").get_data(as_text=True)
    assert 'id="new-user-groups"' in page and 'id="no-group-yet"' not in page


def test_a_miner_joins_no_group(app, miner, accounts):
    post(miner, "/miner/groups", **{"group-name": "lab-a"})
    with app.app_context():
        lab = Group.get(Group.name == "lab-a").id
    response = post(miner, "/miner/users", name="max", role="miner", password="",
                    groups=str(lab))
    assert response.status_code == 400
    assert "Only renters join groups." in response.get_data(as_text=True)
    mina = accounts["miner"].id
    assert post(miner, f"/miner/users/{mina}/groups", groups=[str(lab)]).status_code == 303
    with app.app_context():
        assert not User.select().where(User.name == "max").exists()
        assert Membership.select().where(Membership.user == mina).count() == 0
    page = miner.get("/miner/users").get_data(as_text=True)
    row = page[page.index('data-user="mina"'):]
    assert "Save groups" not in row[:row.index("</tr>")]
    ok = post(miner, "/miner/users", name="carl", role="renter", password="", groups=str(lab))
    assert ok.status_code == 200


# --- the miner's records: one row per replica, each charge a click away --------------------


def test_a_replicas_tick_charges_are_one_row_with_the_detail_a_click_away(app, client, world):
    with app.app_context():
        replica = billing.run_replica(world["rene"], world["tpu"], world["n1"], 10)
        for tick in range(1, 77):  # 76 more ticks, 5 s each, as the scheduler meters
            Replica.update(last_seen_at=utcnow() + timedelta(seconds=5 * tick)).where(
                Replica.id == replica.id).execute()
            ledger.meter()
        charges = list(LedgerEntry.select().where(LedgerEntry.replica == replica.id)
                       .order_by(LedgerEntry.id.desc()))
        other = billing.run_replica(world["rene"], world["cpu"], world["n2"], 30)
    assert len(charges) == 77
    billing.as_miner(client)
    page = billing.text(client.get(billing.RECORDS))
    ids = billing.record_ids(page)
    assert charges[0].id in ids and not set(c.id for c in charges[1:]) & set(ids)
    row = page[page.index(f'data-record="{charges[0].id}"'):]
    row = row[:row.index("</tr>")]
    total = sum(c.amount for c in charges)
    assert f'data-amount="{total}"' in row and 'data-replica-charges="77"' in row
    assert f"replica {replica.id}: 77 charges, seconds 0–{charges[0].seconds_to}" in row
    assert other.charges.get().id in ids  # a replica charged once stays as it is
    detail = billing.text(client.get(f"{billing.RECORDS}?replica={replica.id}"))
    assert billing.record_ids(detail)[:50] == [c.id for c in charges[:50]]
    assert 'data-replica-charges' not in detail
    assert client.get(f"{billing.RECORDS}?replica=x").status_code == 400


def tick(replica_ids, times):
    """``times`` more metering ticks, 5 s apart, of the running replicas ``replica_ids``."""
    for tick_number in range(1, times + 1):
        Replica.update(last_seen_at=utcnow() + timedelta(seconds=5 * tick_number)).where(
            Replica.id.in_(replica_ids)).execute()
        ledger.meter()


def row_of(page, entry_id):
    row = page[page.index(f'data-record="{entry_id}"'):]
    return row[:row.index("</tr>")]


def test_a_replicas_row_sums_only_the_charges_the_filters_match(app, client, world):
    with app.app_context():
        replica = billing.run_replica(world["rene"], world["tpu"], world["n1"], 10)
        tick([replica.id], 3)
        charges = list(LedgerEntry.select().where(LedgerEntry.replica == replica.id)
                       .order_by(LedgerEntry.id))
        billing.last_month([c.id for c in charges[:2]])  # two in May, two in June
    assert len(charges) == 4
    this_month = billing.records.month_start().date().isoformat()
    billing.as_miner(client)
    june = billing.text(client.get(f"{billing.RECORDS}?kind=charge&from={this_month}"))
    assert billing.record_ids(june) == [charges[-1].id]
    row = row_of(june, charges[-1].id)
    assert f'data-amount="{charges[2].amount + charges[3].amount}"' in row
    assert 'data-replica-charges="2"' in row
    assert f"2 charges, seconds {charges[2].seconds_from}–{charges[3].seconds_to}" in row
    detail = html.unescape(re.search(r'href="([^"]+)" class="replica-detail"', row).group(1))
    assert f"from={this_month}" in detail
    assert billing.record_ids(billing.text(client.get(detail))) == [charges[3].id, charges[2].id]
    everything = billing.text(client.get(billing.RECORDS))
    assert f'data-amount="{sum(c.amount for c in charges)}"' in row_of(everything,
                                                                       charges[-1].id)


def test_many_replicas_page_by_replica_each_on_one_page_with_its_own_sum(app, client, world,
                                                                         caplog):
    with app.app_context():
        replicas = [billing.run_replica(world["rene"], world["cpu"], world["n2"], 10).id
                    for _ in range(60)]
        tick(replicas, 2)  # three charges each, the ticks of all replicas interleaved
        sums = dict(LedgerEntry.select(LedgerEntry.replica, fn.SUM(LedgerEntry.amount))
                    .where(LedgerEntry.kind == "charge").group_by(LedgerEntry.replica)
                    .tuples())
        newest = {e.id: e.replica_id for e in LedgerEntry.select().where(
            LedgerEntry.id.in_(LedgerEntry.select(fn.MAX(LedgerEntry.id))
                               .where(LedgerEntry.kind == "charge")
                               .group_by(LedgerEntry.replica)))}
    billing.as_miner(client)
    for query in ("", f"?user={world['rene']}"):  # in id order, and in (at, id) order
        pages, url, counts = [], billing.RECORDS + query, []
        while url:
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="peewee"):
                page = billing.text(client.get(url))
            counts.append(len([r for r in caplog.records if r.name == "peewee"]))
            pages.append(page)
            url = billing.link(page, "next")
        assert [len(billing.record_ids(p)) for p in pages] == [50, 11]  # and the funds row
        shown = [i for p in pages for i in billing.record_ids(p)]
        assert set(newest) < set(shown) and len(shown) == len(set(shown))
        for page in pages:
            for entry_id in set(billing.record_ids(page)) & set(newest):
                row = row_of(page, entry_id)
                assert f'data-amount="{sums[newest[entry_id]]}"' in row
                assert 'data-replica-charges="3"' in row
        assert counts[1] <= counts[0] + 2  # a later page: the same, and where it continues
        back = billing.text(client.get(billing.link(pages[1], "prev")))
        assert billing.record_ids(back) == billing.record_ids(pages[0])



# --- a replica's reasons: stored as a code with its values, shown in the reader's language ---


def test_a_replicas_moves_are_stored_as_codes_and_shown_as_sentences(app, client, world):
    from portal import reasons
    from portal.models import ReplicaEvent, Task
    from scheduler.backend import ContainerState, Timestamp
    from scheduler.follow import follow

    with app.app_context():
        replica = billing.run_replica(world["rene"], world["tpu"], world["n1"], 10)
        Replica.update(state="starting").where(Replica.id == replica.id).execute()
        replica = Replica.get_by_id(replica.id)
        started = Timestamp.parse("2026-01-01T00:00:00Z")
        running = ContainerState("c", "running", None, started, None, {})
        assert follow(replica, running, utcnow(), "test")
        replica = Replica.get_by_id(replica.id)
        exited = ContainerState("c", "exited", 3, started,
                                Timestamp.parse("2026-01-01T00:01:00Z"), {}, oom_killed=True)
        assert follow(replica, exited, utcnow(), "test")
        ReplicaEvent.create(replica=replica.id, state="running", reason="an old plain reason")
        stored = [e.reason for e in ReplicaEvent.select().where(ReplicaEvent.replica == replica.id)
                  .order_by(ReplicaEvent.id)]
        task_id = Task.get_by_id(replica.task_id).id
    assert [reasons.loads(text) for text in stored[:2]] == [
        ("container_started", {}), ("exited_oom", {"code": 3})]
    assert reasons.english(stored[1]) == "exited with code 3 (out of memory)"
    assert reasons.english(stored[2]) == "an old plain reason"
    # The sentence is translated, the values are not.
    chinese = {"placed on %(node)s": "已放置到 %(node)s"}.get
    assert reasons.render("placed_on", {"node": "box"}, translate=chinese) == "已放置到 box"
    login(client, "renter", "rene", PASSWORD)
    page = client.get(f"/renter/tasks/{task_id}").get_data(as_text=True)
    assert "container started" in page and "exited with code 3 (out of memory)" in page
    assert "an old plain reason" in page and "&#34;code&#34;: " not in page
    assert '"code": "' not in page


def test_a_long_reason_is_shortened_to_fit_its_column():
    from portal import reasons

    text = reasons.stored("could_not_start", {"detail": "é" * 2000})
    assert len(text) <= reasons.MAX_STORED
    code, params = reasons.loads(text)
    assert code == "could_not_start" and params["detail"].endswith("…")
    assert reasons.loads('{"code": "nonsense", "params": {}}') is None
    assert reasons.loads('{"code": "exited", "par') is None  # cut short: shown as it is


# --- the launch forms offer the pools that can run a spec -----------------------------------


def test_a_pool_without_a_ready_node_is_not_offered_nor_chosen(app, client, accounts):
    from portal import specs
    from portal.models import Node, Pool, PoolGroup
    from tests.unit import test_tasks as tasks_world

    with app.app_context():
        lab = Pool.create(name="lab")
        group = Group.create(name="lab-group")
        PoolGroup.create(pool=lab, group=group)
        Membership.create(user=accounts["renter"].id, group=group)
        PoolGroup.create(pool=Pool.get(Pool.is_default), group=group)
        box = tasks_world.add_node("box", chips=4)
        Node.update(ready=False).where(Node.id == box.id).execute()  # default: none Ready
        tasks_world.add_node("big", chips=16, pool=lab, cores=32, gb=64)
        specs.create_resource("TPU 1684X", tasks_world.BM1684X)
        tasks_world.make_spec("1 TPU", 1, 1, 1)
        assert Node.select().count() == 2
    login(client, "renter", "rene", PASSWORD)
    for path in ("/renter/notebooks/new", "/renter/tasks/new"):
        page = client.get(path).get_data(as_text=True)
        assert ('<option disabled value="default">default · cannot run now: no Ready node'
                '</option>') in page, path
        assert '<option selected value="lab">lab · runs 1 TPU</option>' in page, path
        assert ('data-pool-note="default">default · cannot run now: no Ready node</small>'
                in page), path

