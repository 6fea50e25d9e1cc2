"""The renter's side of billing: balance, spend and runway on the overview, the Machine-time
page (task -> subtask -> replica records, recharge records, the CSV), each task's live
cost, the refused start, and their JSON twins.

Money moves only through ``portal.ledger``: ``recharge`` / ``adjust`` for credits, and
``meter`` for charges, after a test sets up what the scheduler would have written on
the replica rows (state, Podman's StartedAt / FinishedAt, the price snapshot). The
world (pools, nodes, specs, renters rene and rita with 1000 UNC each) is ``test_tasks``'s.
"""

import csv
import io
import logging
import re
from datetime import datetime, timedelta

import pytest

from portal import ledger, settings, tasks, usage
from portal.api.my_billing import BALANCE, RECORDS
from portal.api.tasks import TASK, TASK_SUMMARY
from portal.csv_export import csv_rows, escape_cell
from portal.ledger import billed_seconds, cost
from portal.models import (
    LedgerEntry,
    Node,
    Pool,
    Replica,
    ResourceSpec,
    Subtask,
    Task,
    User,
)
from portal.money import MICRO, decimal_text, parse_amount
from portal.reasons import BALANCE_EXHAUSTED
from portal.renter import billing as billing_page
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import FORM, IMAGE

world = shared.world  # the fixture: pools, nodes, specs and renters rene and rita

NS = 1_000_000_000
T0 = ledger.to_ns(datetime(2024, 1, 1))
INJECTION = "=cmd|' /C calc'!A0"


@pytest.fixture
def ctx(app, world):
    with app.app_context():
        yield app


def user(name):
    return User.get(User.name == name)


def submit(name="train", owner="rene", subtasks=(("worker", "1 TPU", 2),)):
    return tasks.create_task(user(owner), name, IMAGE, ["/bin/true"], {}, "default",
                             list(subtasks))


def place(task, role, index, state, price, start=T0, end=None, seen=None):
    """What the scheduler writes: the replica's node, state, Podman's times, its price."""
    replica = (Replica.select().join(Subtask)
               .where(Replica.task == task.id, Subtask.role == role, Replica.index == index)
               .get())
    Replica.update(state=state, node=Node.get(Node.name == "box"), started_ns=start,
                   finished_ns=end, last_seen_at=seen, price_per_hour=price).where(
        Replica.id == replica.id).execute()
    return replica.id


def expected(start, end, price):
    return cost(billed_seconds(start, end), price)


def text(response):
    return response.get_data(as_text=True)


def tagged(page, tag, attr):
    """{id: micro} from rows ``<tr ... data-<tag>="id">`` and their first ``data-<attr>``."""
    found = re.findall(rf'data-{tag}="(\d+)"[^>]*>.*?data-{attr}="(-?\d+)"', page, re.S)
    return {int(key): int(value) for key, value in found}


def signed_in(client, name):
    login(client, "renter", name, PASSWORD)
    return client


@pytest.fixture
def tokens(app, world):
    with app.app_context():
        return {u.name: {"Authorization": f"Bearer {create_token(u, 'test')[1]}"}
                for u in User.select()}


# --- a three-replica task, metered ---------------------------------------------------------


@pytest.fixture
def metered(app, world):
    """rene's task "train": worker 0 ran 3600.2 s at 1.5/h (succeeded), worker 1 ran 59 s and
    1 ns at 2.333333/h (failed), ps 0 runs at 7/h, last seen 1000.5 s after its start.
    Returns ({replica id: expected micro-units}, task id, subtask sums by role)."""
    with app.app_context():
        task = submit(subtasks=[("worker", "1 TPU", 2), ("ps", "1 TPU", 1)])
        runs = {
            place(task, "worker", 0, "succeeded", 1_500_000, end=T0 + 3600 * NS + 200_000_000):
                (T0 + 3600 * NS + 200_000_000, 1_500_000),
            place(task, "worker", 1, "failed", 2_333_333, end=T0 + 59 * NS + 1):
                (T0 + 59 * NS + 1, 2_333_333),
            place(task, "ps", 0, "running", 7 * MICRO,
                  seen=datetime(2024, 1, 1) + timedelta(seconds=1000, microseconds=500_000)):
                (T0 + 1000 * NS + 500_000_000, 7 * MICRO),
        }
        assert ledger.meter() == 3
        costs = {rid: expected(T0, end, price) for rid, (end, price) in runs.items()}
        rids = list(costs)
        subtasks = {"worker": costs[rids[0]] + costs[rids[1]], "ps": costs[rids[2]]}
        return costs, task.id, subtasks


def test_the_ledger_and_the_pages_agree_to_the_micro_unit(client, app, metered):
    costs, task_id, subtasks = metered
    assert list(costs.values()) == [1_500_417, 38_889, 1_946_389]  # by hand: rounded up
    with app.app_context():
        assert {r.id: r.charged for r in Replica.select()} == costs
        assert ledger.verify() == []
        sub_ids = {s.role: s.id for s in Subtask.select()}
    signed_in(client, "rene")
    page = text(client.get("/renter/billing"))
    assert tagged(page, "replica", "charged") == costs
    assert tagged(page, "subtask", "charged") == {sub_ids[r]: c for r, c in subtasks.items()}
    assert tagged(page, "task", "charged") == {task_id: sum(costs.values())}
    assert tagged(page, "task", "seconds") == {task_id: 3601 + 60 + 1001}
    assert re.search(r'data-price="2333333"', page) and "2.333333" in page
    assert f'id="total-charged" data-micro="{sum(costs.values())}"' in page
    # The task list and the task page show the same live cost.
    listing = text(client.get("/renter/tasks"))
    assert f'data-charged="{sum(costs.values())}"' in listing
    detail = text(client.get(f"/renter/tasks/{task_id}"))
    assert f'id="task-cost" data-charged="{sum(costs.values())}"' in detail
    assert tagged(detail, "replica", "charged") == costs
    assert sorted(map(int, re.findall(r'subtask-cost" data-charged="(\d+)"', detail))) == sorted(
        subtasks.values())


def test_the_cost_of_a_running_replica_grows_with_each_tick(client, app, metered):
    costs, task_id, _subtasks = metered
    running = list(costs)[2]
    with app.app_context():
        Replica.update(last_seen_at=datetime(2024, 1, 1, 1, 0, 0)).where(
            Replica.id == running).execute()
        assert ledger.meter() == 1
        assert ledger.verify() == []
    costs[running] = expected(T0, T0 + 3600 * NS, 7 * MICRO)
    assert costs[running] == 7 * MICRO
    signed_in(client, "rene")
    assert tagged(text(client.get("/renter/billing")), "replica", "charged") == costs
    api = client.get(f"/api/v1/tasks/{task_id}").json
    assert api["cost"] == sum(costs.values())
    assert {r["id"]: (r["charged"], r["billed_seconds"]) for r in api["replicas"]}[running] == (
        7 * MICRO, 3600)


def test_the_task_json_carries_costs(client, app, metered, tokens):
    costs, task_id, _subtasks = metered
    task = client.get(f"/api/v1/tasks/{task_id}", headers=tokens["rene"]).json
    TASK.validate(task, "")
    assert task["cost"] == sum(costs.values())
    assert {r["id"]: r["charged"] for r in task["replicas"]} == costs
    assert sorted((r["price_per_hour"], r["billed_seconds"]) for r in task["replicas"]) == [
        (1_500_000, 3601), (2_333_333, 60), (7 * MICRO, 1001)]
    listed = client.get("/api/v1/tasks", headers=tokens["rene"]).json
    for summary in listed:
        TASK_SUMMARY.validate(summary, "")
    assert [t["cost"] for t in listed] == [sum(costs.values())]
    fresh = client.post("/api/v1/tasks", headers=tokens["rene"], json={
        "name": "new", "image": IMAGE, "argv": ["/bin/true"], "pool": "default",
        "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1}]}).json
    assert fresh["cost"] == 0 and fresh["replicas"][0]["price_per_hour"] is None


def test_a_deleted_task_keeps_its_records(client, app, metered):
    costs, task_id, _subtasks = metered
    with app.app_context():
        Replica.update(state="stopped", finished_ns=T0 + 1000 * NS + 500_000_000).where(
            Replica.state == "running").execute()
        ledger.meter()
        tasks.delete_task(Task.get_by_id(task_id))
    signed_in(client, "rene")
    page = text(client.get("/renter/billing"))
    assert tagged(page, "task", "charged") == {task_id: sum(costs.values())}
    assert "deleted" in page and f'href="/renter/tasks/{task_id}"' not in page
    assert client.get(f"/renter/billing?task={task_id}").status_code == 200


# --- recharge records -----------------------------------------------------------------------


def test_recharge_records_say_who_and_why(client, app, world):
    with app.app_context():
        mina, rene = user("mina"), user("rene")
        ledger.recharge(rene, parse_amount("50"), mina, "invoice <42>")
        ledger.adjust(rene, -parse_amount("2.5"), mina, "double-counted hour")
        ledger.adjust(rene, parse_amount("1"), mina, "outage", kind="refund")
    signed_in(client, "rene")
    page = text(client.get("/renter/billing"))
    table = page[page.index('id="credits-table"'):]
    kinds = re.findall(r'data-kind="(\w+)"', table)
    assert kinds == ["refund", "adjust", "recharge", "recharge"]  # newest first; fund() last
    assert "invoice &lt;42&gt;" in table and "invoice <42>" not in table
    assert "double-counted hour" in table and "outage" in table
    assert table.count("<td>mina</td>") == 3 and "the billing command" in table
    assert 'data-amount="-2500000"' in table and "-2.50" in table
    assert 'data-micro="1048500000"' in page  # 1000 + 50 - 2.5 + 1


# --- balance, spend, runway and the warning -------------------------------------------------


def running_at(price, owner="rene"):
    """A task of ``owner`` with one replica running at ``price`` micro-units per hour."""
    task = submit(owner=owner, subtasks=[("worker", "1 TPU", 1)])
    place(task, "worker", 0, "running", price)
    return task


def test_the_warning_comes_and_goes_with_the_runway(client, app, world, tokens):
    signed_in(client, "rene")
    overview = text(client.get("/renter/"))
    assert 'id="balance" data-micro="1000000000"' in overview and "1,000.00" in overview
    assert 'id="low-balance"' not in overview and "nothing runs" in overview
    assert client.get("/api/v1/account/balance", headers=tokens["rene"]).json == {
        "balance": 1000 * MICRO, "balance_decimal": "1000.00", "currency": "UNC",
        "spend_per_hour": 0, "runway_minutes": None, "low": False}

    with app.app_context():
        running_at(1500 * MICRO)
        running_at(500 * MICRO)
    overview = text(client.get("/renter/"))  # 1000 at 2000 per hour: 30 minutes
    assert 'id="spend" data-micro="2000000000"' in overview
    assert 'data-minutes="30"' in overview and "0 h 30 min" in overview
    assert 'id="low-balance"' in overview and "runs out in 0 h 30 min" in overview
    balance = client.get("/api/v1/account/balance", headers=tokens["rene"]).json
    BALANCE.validate(balance, "")
    assert (balance["runway_minutes"], balance["low"]) == (30, True)

    with app.app_context():  # 2000 lasts exactly the miner's 60 minutes: not low
        ledger.recharge(user("rene"), 1000 * MICRO, user("mina"))
    overview = text(client.get("/renter/"))
    assert "1 h 0 min" in overview and 'id="low-balance"' not in overview
    assert client.get("/api/v1/account/balance", headers=tokens["rene"]).json["low"] is False

    with app.app_context():
        settings.put("low_balance_minutes", "61")
    assert 'id="low-balance"' in text(client.get("/renter/billing"))
    assert client.get("/api/v1/account/balance", headers=tokens["rene"]).json["low"] is True


def test_an_exhausted_balance_says_so_and_lists_the_stopped_tasks(client, app, world, tokens):
    with app.app_context():
        task = running_at(60 * MICRO)
        other = running_at(60 * MICRO, owner="rita")
        ledger.adjust(user("rene"), -1000 * MICRO, user("mina"), "test: used up")
        tasks.request_stop(task, BALANCE_EXHAUSTED)
        tasks.request_stop(other, BALANCE_EXHAUSTED)
        Task.update(name="<i>rene's</i>").where(Task.id == task.id).execute()
    signed_in(client, "rene")
    overview = text(client.get("/renter/"))
    assert "Balance exhausted: your running work was stopped; ask your miner to recharge." in (
        overview)
    stops = overview[overview.index('id="balance-stops"'):]
    assert f'data-task="{task.id}"' in stops and f'data-task="{other.id}"' not in stops
    assert "&lt;i&gt;rene&#39;s&lt;/i&gt;" in stops and "balance exhausted" in stops
    balance = client.get("/api/v1/account/balance", headers=tokens["rene"]).json
    assert (balance["balance"], balance["runway_minutes"], balance["low"]) == (0, 0, True)
    assert balance["balance_decimal"] == "0.00"


def test_a_tasks_own_page_shows_when_the_balance_stopped_it(client, app, world):
    with app.app_context():
        task = running_at(60 * MICRO)
        tasks.request_stop(task, BALANCE_EXHAUSTED)
        place(task, "worker", 0, "stopped", 60 * MICRO, end=T0 + 10 * NS)
        ledger.meter()
    signed_in(client, "rene")
    page = text(client.get(f"/renter/billing?task={task.id}"))
    assert "balance exhausted" in page and 'data-charged="166667"' in page


def test_decimal_text_and_runway_text(ctx):
    assert decimal_text(-12_500_000) == "-12.50" and decimal_text(-1_234_500_000) == "-1234.50"
    assert decimal_text(1) == "0.000001" and decimal_text(0) == "0.00"
    assert usage.Standing(100, 0, 60).runway_minutes is None
    assert usage.Standing(-5, 10, 60).runway_minutes == 0
    low = usage.Standing(MICRO * 59, MICRO * 60, 60)
    assert low.runway_minutes == 59 and low.low
    assert not usage.Standing(MICRO * 60, MICRO * 60, 60).low
    assert not usage.Standing(1, 0, 60).low and usage.Standing(0, 0, 60).low


# --- another renter sees nothing ---------------------------------------------------------


def test_another_renter_gets_404_and_none_of_the_rows(client, app, metered, tokens):
    _costs, task_id, _subtasks = metered
    with app.app_context():
        Task.update(name=INJECTION).where(Task.id == task_id).execute()
        rene_rows = {row.id for row in LedgerEntry.select().where(
            LedgerEntry.user == user("rene"))}
    signed_in(client, "rita")
    assert client.get(f"/renter/billing?task={task_id}").status_code == 404
    assert client.get(f"/renter/tasks/{task_id}").status_code == 404
    page = text(client.get("/renter/billing"))
    assert "No machine-time used yet." in page and f'data-task="{task_id}"' not in page
    records = client.get("/api/v1/account/records", headers=tokens["rita"]).json["records"]
    assert [r["kind"] for r in records] == ["recharge"] and not {r["id"] for r in records} & (
        rene_rows)
    response = client.get(f"/api/v1/account/records?task={task_id}", headers=tokens["rita"])
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    exported = text(client.get("/renter/billing/records.csv"))
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert "calc" not in exported and [row["kind"] for row in rows] == ["recharge"]


@pytest.mark.parametrize("path", ["/renter/billing", "/renter/billing/records.csv"])
def test_a_miner_is_turned_away(client, world, path):
    login(client, "miner", "mina", PASSWORD)
    assert client.get(path).status_code in (302, 403)


@pytest.mark.parametrize("path", ["/api/v1/account/balance", "/api/v1/account/records"])
def test_the_api_is_for_renters(client, tokens, path):
    assert client.get(path, headers=tokens["mina"]).status_code == 403
    assert client.get(path).status_code == 401


# --- the CSV -------------------------------------------------------------------------------


def test_the_csv_holds_every_own_row_escaped(client, app, metered, monkeypatch):
    costs, task_id, _subtasks = metered
    with app.app_context():
        Task.update(name=INJECTION).where(Task.id == task_id).execute()
        ledger.recharge(user("rene"), MICRO, user("mina"), "@SUM(A1:A9)")
        ledger.adjust(user("rene"), -MICRO, user("mina"), "+1 hour\tby hand")
        ids = [row.id for row in LedgerEntry.select().where(LedgerEntry.user == user("rene"))
               .order_by(LedgerEntry.id.desc())]
    monkeypatch.setattr(billing_page, "CSV_BATCH", 2)  # several batches, none lost or doubled
    signed_in(client, "rene")
    response = client.get("/renter/billing/records.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="machine')
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert [int(row["id"]) for row in rows] == ids
    charges = [row for row in rows if row["kind"] == "charge"]
    assert {row["task"] for row in charges} == {"'" + INJECTION}
    assert sorted(int(row["replica_id"]) for row in charges) == sorted(costs)
    assert sum(parse_amount(row["amount"].lstrip("-")) for row in charges) == sum(
        costs.values())
    assert charges[0]["amount"].startswith("-")  # a number, not escaped text
    notes = {row["kind"]: row["note"] for row in rows[:2]}
    assert notes == {"adjust": "'+1 hour\tby hand", "recharge": "'@SUM(A1:A9)"}
    assert {row["currency"] for row in rows} == {"UNC"}
    assert rows[0]["by"] == "mina" and rows[-1]["by"] == ""


@pytest.mark.parametrize("cell, written", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"), ("", ""), (None, ""), (-5, -5),
    ("a\x00b\x1bc", "a\ufffdb\ufffdc"), ("\x00=1", "\ufffd=1"), ("a\nb", "a\nb")])
def test_escape_cell(cell, written):
    assert escape_cell(cell) == written


def test_csv_rows_are_lines():
    lines = list(csv_rows(["a", "b"], iter([["=x", 1], ['say "hi"', None]])))
    assert lines == ["a,b\r\n", "'=x,1\r\n", '"say ""hi""",\r\n']


# --- the records API -----------------------------------------------------------------------


def test_records_filter_and_page(client, app, metered, tokens, monkeypatch):
    costs, task_id, _subtasks = metered
    headers = tokens["rene"]
    everything = client.get("/api/v1/account/records", headers=headers).json
    RECORDS.validate(everything, "")
    assert [r["kind"] for r in everything["records"]] == ["charge"] * 3 + ["recharge"]
    assert everything["next_before_id"] is None
    charge = everything["records"][0]
    assert (charge["task"], charge["task_name"], charge["node"], charge["spec"]) == (
        task_id, "train", "box", "1 TPU")
    assert {r["replica"]: -r["amount"] for r in everything["records"][:3]} == costs
    charges = client.get(f"/api/v1/account/records?kind=charge&task={task_id}",
                         headers=headers).json["records"]
    assert len(charges) == 3
    assert client.get("/api/v1/account/records?kind=refund", headers=headers).json == {
        "records": [], "next_before_id": None}

    monkeypatch.setattr("portal.api.my_billing.RECORDS_PAGE", 3)
    first = client.get("/api/v1/account/records", headers=headers).json
    assert len(first["records"]) == 3 and first["next_before_id"] == first["records"][-1]["id"]
    rest = client.get(f"/api/v1/account/records?before_id={first['next_before_id']}",
                      headers=headers).json
    assert [r["kind"] for r in rest["records"]] == ["recharge"] and rest["next_before_id"] is None


@pytest.mark.parametrize("query, status", [
    ("kind=bogus", 400), ("before_id=abc", 400), ("before_id=-1", 400), ("task=0", 400),
    ("task=1e3", 400), ("task=999999", 404)])
def test_records_refuse_bad_queries(client, tokens, query, status):
    response = client.get(f"/api/v1/account/records?{query}", headers=tokens["rene"])
    assert response.status_code == status and response.json["error"]["message"]


# --- too little balance to start -------------------------------------------------------------


@pytest.fixture
def poor(app, world):
    """A renter with 1 UNC: less than 10 minutes of two 1.5-per-hour replicas (0.5 UNC) is
    fine, but not of 16 of them."""
    with app.app_context():
        ledger.recharge(create_user("pia", "renter", PASSWORD), MICRO, None)
        return create_token(user("pia"), "test")[1]


def test_a_start_without_balance_is_refused_on_the_form(client, app, poor):
    signed_in(client, "pia")
    token = csrf_token(client, "/renter/tasks/new")
    response = client.post("/renter/tasks", data={
        "csrf_token": token, **FORM, "subtasks-0-replicas": "64"})
    page = text(response)
    assert response.status_code == 400
    message = re.search(r'<p class="error-text" role="alert">([^<]*)</p>', page).group(1)
    assert message == ("Your balance (1.00 UNC) does not cover 10 minutes of this task "
                       "(16.00 UNC). Ask your miner to recharge your account.")
    with app.app_context():
        assert Task.select().count() == 0
    ok = client.post("/renter/tasks", data={"csrf_token": token, **FORM})
    assert ok.status_code == 303  # 2 replicas: 0.50 for 10 minutes


def test_a_start_without_balance_is_refused_by_the_api(client, app, poor):
    response = client.post("/api/v1/tasks", headers={"Authorization": f"Bearer {poor}"}, json={
        "name": "big", "image": IMAGE, "argv": ["/bin/true"], "pool": "default",
        "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 64}]})
    assert response.status_code == 409
    error = response.json["error"]
    assert "does not cover 10 minutes" in error["message"] and "recharge" in error["message"]
    with app.app_context():
        assert Task.select().count() == 0


# --- many tasks: a page costs the same queries --------------------------------------------


def many_tasks(n, owner="rene"):
    """``n`` tasks of ``owner`` that ran, written as rows (one subtask, one replica each)."""
    rene, pool = user(owner), Pool.get(Pool.name == "default")
    spec = ResourceSpec.get(ResourceSpec.name == "1 TPU")
    first = (Task.select(Task.id).order_by(Task.id.desc()).scalar() or 0) + 1
    base = datetime(2024, 1, 1)
    for start in range(0, n, 500):
        ids = range(first + start, first + min(n, start + 500))
        Task.insert_many([{"id": i, "user": rene, "name": f"t{i}", "image": IMAGE, "pool": pool,
                           "state": "succeeded", "submitted_at": base + timedelta(seconds=i)}
                          for i in ids]).execute()
        Subtask.insert_many([{"id": i, "task": i, "role": "w", "spec": spec, "count": 1}
                             for i in ids]).execute()
        Replica.insert_many([{"task": i, "subtask": i, "index": 0, "state": "succeeded",
                              "started_ns": T0, "finished_ns": T0 + i * NS,
                              "price_per_hour": 3600} for i in ids]).execute()
    return first


def queries(client, caplog, path):
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        response = client.get(path)
    assert response.status_code == 200
    return response, len([r for r in caplog.records if r.name == "peewee"])


def test_pages_of_ten_thousand_tasks_cost_the_same_queries(client, app, world, caplog):
    signed_in(client, "rene")
    with app.app_context():
        many_tasks(3)
        ledger.meter()
    _response, few = queries(client, caplog, "/renter/billing")
    with app.app_context():
        first = many_tasks(10_000)
        assert ledger.meter() == 10_000
    response, lots = queries(client, caplog, "/renter/billing")
    assert lots == few
    page = text(response)
    newest = first + 9_999
    assert list(tagged(page, "task", "charged"))[:2] == [newest, newest - 1]
    assert len(tagged(page, "task", "charged")) == usage.PAGE_SIZE
    assert tagged(page, "task", "charged")[newest] == newest  # 1 micro-unit per second
    assert "Page 1 of 501" in page and 'href="/renter/billing?page=2" rel="next"' in page
    last, _n = queries(client, caplog, "/renter/billing?page=501")
    assert list(tagged(text(last), "task", "charged")) == [3, 2, 1]
    beyond, _n = queries(client, caplog, "/renter/billing?page=9999")
    assert "Page 501 of 501" in text(beyond)
    second, _n = queries(client, caplog, "/renter/billing?page=2&credits=1")
    assert list(tagged(text(second), "task", "charged"))[0] == newest - 20
    assert 'href="/renter/billing?page=1&amp;credits=1" rel="prev"' in text(second)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "１", "99999999999999999999"])
def test_a_bad_page_number_is_the_first_page(client, world, value):
    signed_in(client, "rene")
    assert client.get(f"/renter/billing?page={value}&credits={value}").status_code == 200


@pytest.mark.parametrize("value", ["abc", "0", "-1", "99999999999999999999"])
def test_a_bad_task_filter_is_404(client, world, value):
    signed_in(client, "rene")
    assert client.get(f"/renter/billing?task={value}").status_code == 404


def test_the_task_list_costs_no_query_per_task(client, app, world, caplog):
    signed_in(client, "rene")
    with app.app_context():
        running_at(MICRO)
    _response, one = queries(client, caplog, "/renter/tasks")
    with app.app_context():
        for _ in range(5):
            running_at(MICRO)
    response, six = queries(client, caplog, "/renter/tasks")
    assert six == one and text(response).count('class="task-cost"') == 6


def test_the_menu_leads_to_the_page(client, world):
    signed_in(client, "rene")
    overview = text(client.get("/renter/"))
    assert 'href="/renter/billing"' in overview
    page = text(client.get("/renter/billing"))
    assert "<h1>Machine-time</h1>" in page and "No machine-time used yet." in page
    assert 'href="/renter/billing/records.csv"' in page
