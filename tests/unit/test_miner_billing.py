"""The miner's Machine-time pages and their JSON twins: balances, recharges, adjustments and
refunds, the records (filters, keyset pages, CSV), earnings and the billing settings.

Charges are written by the real ``ledger.meter`` over replica rows standing for
what the scheduler saw; recharges and corrections go through the real forms and
API on a real SQLite database.
"""

import csv
import html
import io
import re
from datetime import timedelta

import pytest

from portal import ledger, records, settings
from portal.models import (
    LEDGER_KINDS,
    EarningDay,
    EarningMonth,
    LedgerEntry,
    Node,
    Pool,
    Replica,
    ResourceSpec,
    Subtask,
    Task,
    UsageMonth,
    User,
    utcnow,
)
from portal.money import MICRO
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

NS = 1_000_000_000
PAGE = "/miner/machine-time"
RECORDS = "/miner/machine-time/records"
FUNDS = 1000 * MICRO  # what the ``accounts`` fixture gave rene


@pytest.fixture
def world(app, accounts):
    """rene (1000 UNC) and ana (nothing), renters; two specs and two nodes; ids by name."""
    with app.app_context():
        ana = create_user("ana", "renter", PASSWORD, "Ana A")
        tpu = ResourceSpec.create(name="tpu", cpu_millis=1000, memory_mib=512,
                                  price_per_hour=7 * MICRO)
        cpu = ResourceSpec.create(name="cpu", cpu_millis=1000, memory_mib=512,
                                  price_per_hour=2 * MICRO)
        nodes = [Node.create(name=name, url=f"unix:///run/{name}.sock") for name in ("n1", "n2")]
        return {"mina": accounts["miner"].id, "rene": accounts["renter"].id, "ana": ana.id,
                "tpu": tpu.id, "cpu": cpu.id, "n1": nodes[0].id, "n2": nodes[1].id}


def run_replica(user_id, spec_id, node_id, seconds, task="train", running=True):
    """A replica that ran ``seconds`` (still running, or ended), metered by the ledger."""
    now = utcnow()
    end = ledger.to_ns(now)
    spec = ResourceSpec.get_by_id(spec_id)
    state = "running" if running else "succeeded"
    task_row = Task.create(user=user_id, name=task, image="busybox",
                           pool=Pool.get(Pool.is_default), state=state)
    subtask = Subtask.create(task=task_row, role="main", spec=spec, count=1)
    replica = Replica.create(task=task_row, subtask=subtask, index=0, state=state, node=node_id,
                             started_ns=end - seconds * NS, last_seen_at=now,
                             finished_ns=None if running else end,
                             price_per_hour=spec.price_per_hour)
    ledger.meter()
    return replica


def last_month(entry_ids):
    """Move charge rows to the last day of last month (standing for old rows), and their
    amounts from this month's usage total and their day's earnings to last month's, as if
    charged then."""
    moment = records.month_start() - timedelta(days=1)
    for entry in LedgerEntry.select().where(LedgerEntry.id.in_(entry_ids)):
        if entry.kind == "charge":
            move_earning(entry, moment.date())
        UsageMonth.update(charged=UsageMonth.charged + entry.amount).where(
            UsageMonth.user == entry.user_id,
            UsageMonth.month == records.month_start().date()).execute()
        UsageMonth.insert(user=entry.user_id, month=moment.date().replace(day=1),
                          charged=-entry.amount).on_conflict(
            conflict_target=[UsageMonth.user, UsageMonth.month],
            update={UsageMonth.charged: UsageMonth.charged - entry.amount}).execute()
    LedgerEntry.update(at=moment).where(LedgerEntry.id.in_(entry_ids)).execute()


def move_earning(entry, day):
    """Move charge ``entry``'s amount from the earnings of its own day and month to ``day``'s."""
    key = (entry.node_id or 0, entry.spec_id or 0)
    for model, field, old, new in ((EarningDay, EarningDay.day, entry.at.date(), day),
                                   (EarningMonth, EarningMonth.month,
                                    entry.at.date().replace(day=1), day.replace(day=1))):
        model.update(charged=model.charged + entry.amount).where(
            field == old, model.node == key[0], model.spec == key[1]).execute()
        model.insert({field: new, model.node: key[0], model.spec: key[1],
                      model.charged: -entry.amount}).on_conflict(
            conflict_target=[field, model.node, model.spec],
            update={model.charged: model.charged - entry.amount}).execute()


def as_miner(client):
    login(client, "miner", "mina", PASSWORD)
    return csrf_token(client, PAGE)


def balance(app, user_id):
    with app.app_context():
        return User.get_by_id(user_id).balance


def row_count(app):
    with app.app_context():
        return LedgerEntry.select().count()


def text(response):
    return html.unescape(response.get_data(as_text=True))


def renter_row(page_text, name):
    match = re.search(rf'<tr data-renter="{name}">(.*?)</tr>', page_text, re.S)
    assert match, f"no row for {name}"
    return re.sub(r"\s+", " ", match.group(1))


def record_ids(page_text):
    return [int(i) for i in re.findall(r'data-record="(\d+)"', page_text)]


def link(page_text, rel):
    match = re.search(rf'href="([^"]+)" rel="{rel}"', page_text)
    return match and html.unescape(match.group(1))


# --- who may enter -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PAGE, RECORDS, RECORDS + ".csv", PAGE + "/earnings",
                                  "/miner/machine_time"])
def test_a_renter_gets_403_on_every_machine_time_page(client, world, path):
    login(client, "renter", "rene", PASSWORD)
    assert client.get(path).status_code == 403


def test_a_renter_cannot_recharge_themselves(app, client, world):
    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/renter/")
    response = client.post(f"{PAGE}/{world['rene']}/recharge",
                           data={"csrf_token": token, "recharge-amount": "100"})
    assert response.status_code == 403
    assert balance(app, world["rene"]) == FUNDS


def test_anonymous_visitors_are_sent_to_the_miner_login(client, world):
    assert client.get(PAGE).location.startswith("/miner/login?next=")


# --- the renters ---------------------------------------------------------------------------


def test_every_renter_with_balance_use_this_month_and_spend_per_hour(app, client, world):
    with app.app_context():
        old = run_replica(world["rene"], world["tpu"], world["n1"], 3600, running=False)
        last_month([e.id for e in old.charges])
        run_replica(world["rene"], world["tpu"], world["n1"], 1800)  # 3.50 so far, running
        run_replica(world["rene"], world["cpu"], world["n2"], 3600)  # 2.00 so far, running
    as_miner(client)
    page = text(client.get(PAGE))
    rene = renter_row(page, "rene")
    # 1000 - 7 (last month) - 3.5 - 2; this month only 5.50; 7 + 2 an hour running
    assert "987.50 UNC" in rene and "5.50 UNC" in rene and "9.00 UNC" in rene
    assert '<td class="running">2</td>' in rene
    ana = renter_row(page, "ana")
    assert '<td class="running">0</td>' in ana and ana.count("0.00 UNC") == 3
    assert 'data-renter="mina"' not in page  # miners have no machine-time
    assert "This page is not built yet." not in page


def test_choosing_a_renter_shows_their_forms_and_latest_records(client, world):
    as_miner(client)
    page = text(client.get(f"{PAGE}?renter={world['rene']}"))
    assert "Recharge or adjust rene" in page and 'id="recharge-form"' in page
    assert "test funds" in page  # the fixture's recharge, among the latest records
    assert client.get(f"{PAGE}?renter={world['mina']}").status_code == 404  # a miner
    assert client.get(f"{PAGE}?renter=999999").status_code == 404
    assert client.get(f"{PAGE}?renter=abc").status_code == 404


# --- recharge, adjust, refund through the page ---------------------------------------------


def test_the_miner_recharges_a_renter(app, client, world):
    token = as_miner(client)
    response = client.post(f"{PAGE}/{world['rene']}/recharge", data={
        "csrf_token": token, "recharge-amount": " 12.5 ", "recharge-note": "=cmd|' /C calc'!A0"})
    assert response.status_code == 303
    assert response.location == f"{PAGE}?renter={world['rene']}"
    page = text(client.get(response.location))
    assert "Recharged rene with 12.50 UNC; their balance is 1,012.50 UNC." in page
    assert "1,012.50 UNC" in renter_row(page, "rene")
    with app.app_context():
        entry = LedgerEntry.select().order_by(LedgerEntry.id.desc()).get()
        assert (entry.user_id, entry.kind, entry.amount, entry.balance_after, entry.actor_id,
                entry.note) == (world["rene"], "recharge", 12_500_000, FUNDS + 12_500_000,
                                world["mina"], "=cmd|' /C calc'!A0")
        assert ledger.verify() == []


@pytest.mark.parametrize("amount,message", [
    ("", "Enter an amount such as 12.5."),
    ("abc", "Enter an amount such as 12.5."),
    ("-5", "The amount must be greater than zero."),
    ("0", "The amount must be greater than zero."),
    ("1.0000001", "An amount has at most 6 decimal places."),
    ("1e30", "The amount is too large."),
    ("9223372036854.775807", "That would take the balance beyond what can be stored."),
])
def test_a_bad_recharge_amount_is_refused_and_nothing_is_written(app, client, world, amount,
                                                                 message):
    token = as_miner(client)
    before = row_count(app)
    response = client.post(f"{PAGE}/{world['rene']}/recharge",
                           data={"csrf_token": token, "recharge-amount": amount})
    assert response.status_code == 400
    page = text(response)
    assert message in page and 'id="recharge-form"' in page
    assert row_count(app) == before and balance(app, world["rene"]) == FUNDS


def test_recharge_refuses_a_long_note_a_miner_and_an_unknown_user(app, client, world):
    token = as_miner(client)
    response = client.post(f"{PAGE}/{world['rene']}/recharge", data={
        "csrf_token": token, "recharge-amount": "1", "recharge-note": "x" * 513})
    assert response.status_code == 400 and "At most 512 characters." in text(response)
    response = client.post(f"{PAGE}/{world['mina']}/recharge",
                           data={"csrf_token": token, "recharge-amount": "1"})
    assert response.status_code == 400
    assert "Only renters have machine-time; mina is a miner." in text(response)
    response = client.post(f"{PAGE}/999999/recharge",
                           data={"csrf_token": token, "recharge-amount": "1"})
    assert response.status_code == 404
    assert row_count(app) == 1  # only the fixture's funds


def test_adjust_either_way_and_refund_with_a_reason(app, client, world):
    token = as_miner(client)
    url = f"{PAGE}/{world['rene']}/adjust"
    response = client.post(url, data={"csrf_token": token, "adjust-amount": "-3",
                                      "adjust-kind": "adjust", "adjust-reason": "double credit"})
    assert response.status_code == 303
    assert ("Adjusted the balance of rene by -3.00 UNC; it is 997.00 UNC."
            in text(client.get(response.location)))
    client.post(url, data={"csrf_token": token, "adjust-amount": "0.000001",
                           "adjust-kind": "adjust", "adjust-reason": "rounding"})
    response = client.post(url, data={"csrf_token": token, "adjust-amount": "2.5",
                                      "adjust-kind": "refund", "adjust-reason": "node failed"})
    assert ("Refunded 2.50 UNC to rene; their balance is 999.500001 UNC."
            in text(client.get(response.location)))
    with app.app_context():
        rows = [(e.kind, e.amount, e.note, e.actor_id) for e in LedgerEntry.select()
                .where(LedgerEntry.user == world["rene"]).order_by(LedgerEntry.id)][1:]
        assert rows == [("adjust", -3 * MICRO, "double credit", world["mina"]),
                        ("adjust", 1, "rounding", world["mina"]),
                        ("refund", 2_500_000, "node failed", world["mina"])]
        assert User.get_by_id(world["rene"]).balance == FUNDS - 500_000 + 1
        assert ledger.verify() == []


@pytest.mark.parametrize("fields,message", [
    ({"adjust-amount": "0"}, "The amount must not be zero."),
    ({"adjust-amount": "-0"}, "The amount must not be zero."),
    ({"adjust-amount": "--3"}, "Enter an amount such as 12.5 or -3."),
    ({"adjust-amount": "-+3"}, "Enter an amount such as 12.5 or -3."),
    ({"adjust-amount": "three"}, "Enter an amount such as 12.5."),
    ({"adjust-amount": "-1.0000001"}, "An amount has at most 6 decimal places."),
    ({"adjust-amount": "-9223372036854.775808"}, "The amount is too large."),
    ({"adjust-amount": "9223372036854.775807"},
     "That would take the balance beyond what can be stored."),
    ({"adjust-reason": ""}, "Say why: a reason is required."),
    ({"adjust-reason": "   "}, "Say why: a reason is required."),
    ({"adjust-reason": "x" * 513}, "At most 512 characters."),
    ({"adjust-kind": "bonus"}, "Choose an adjustment or a refund."),
    ({"adjust-kind": "refund", "adjust-amount": "-3"}, "The amount must be greater than zero."),
])
def test_a_bad_adjustment_is_refused_and_nothing_is_written(app, client, world, fields,
                                                            message):
    token = as_miner(client)
    data = {"csrf_token": token, "adjust-amount": "-3", "adjust-kind": "adjust",
            "adjust-reason": "why", **fields}
    response = client.post(f"{PAGE}/{world['rene']}/adjust", data=data)
    assert response.status_code == 400
    page = text(response)
    assert message in page and 'id="adjust-form"' in page
    assert row_count(app) == 1 and balance(app, world["rene"]) == FUNDS


@pytest.mark.parametrize("path,data", [
    ("/recharge", {"recharge-amount": "5"}),
    ("/adjust", {"adjust-amount": "5", "adjust-kind": "adjust", "adjust-reason": "why"}),
    ("settings", {"settings-currency": "EUR", "settings-min_start_minutes": "1",
                  "settings-low_balance_minutes": "1"}),
])
def test_every_post_needs_the_csrf_token(app, client, world, path, data):
    as_miner(client)
    url = f"{PAGE}/settings" if path == "settings" else f"{PAGE}/{world['rene']}{path}"
    assert client.post(url, data=data).status_code == 400
    assert client.post(url, data={**data, "csrf_token": "forged"}).status_code == 400
    assert row_count(app) == 1 and balance(app, world["rene"]) == FUNDS
    with app.app_context():
        assert settings.get("currency") == "UNC"


# --- settings ------------------------------------------------------------------------------


def test_the_miner_saves_the_billing_settings(app, client, world):
    token = as_miner(client)
    page = text(client.get(PAGE))
    assert 'value="UNC"' in page and 'value="10"' in page and 'value="60"' in page
    response = client.post(f"{PAGE}/settings", data={
        "csrf_token": token, "settings-currency": " credits ",
        "settings-min_start_minutes": "15", "settings-low_balance_minutes": "0"})
    assert response.status_code == 303
    page = text(client.get(PAGE))
    assert "Billing settings saved." in page and "1,000.00 credits" in renter_row(page, "rene")
    with app.app_context():
        assert [settings.get(k) for k in ("currency", "min_start_minutes",
                                          "low_balance_minutes")] == ["credits", "15", "0"]


@pytest.mark.parametrize("field,value,message", [
    ("currency", "", "Enter a label of 1 to 16 characters, such as UNC."),
    ("currency", "x" * 17, "Enter a label of 1 to 16 characters, such as UNC."),
    ("currency", "U\x07C", "Enter a label of 1 to 16 characters, such as UNC."),
    ("min_start_minutes", "-1", "Enter whole minutes from 0 to 43200."),
    ("min_start_minutes", "1.5", "Enter whole minutes from 0 to 43200."),
    ("min_start_minutes", "", "Enter whole minutes from 0 to 43200."),
    ("low_balance_minutes", "43201", "Enter whole minutes from 0 to 43200."),
    ("low_balance_minutes", "ten", "Enter whole minutes from 0 to 43200."),
    ("low_balance_minutes", "١٢", "Enter whole minutes from 0 to 43200."),  # not ASCII digits
])
def test_bad_settings_are_refused_and_nothing_is_saved(app, client, world, field, value,
                                                       message):
    token = as_miner(client)
    data = {"csrf_token": token, "settings-currency": "EUR", "settings-min_start_minutes": "5",
            "settings-low_balance_minutes": "30", f"settings-{field}": value}
    response = client.post(f"{PAGE}/settings", data=data)
    assert response.status_code == 400 and message in text(response)
    with app.app_context():
        assert [settings.get(k) for k in ("currency", "min_start_minutes",
                                          "low_balance_minutes")] == ["UNC", "10", "60"]


# --- records -------------------------------------------------------------------------------


@pytest.fixture
def ledger_rows(app, world):
    """Rows of every kind for two renters and two tasks; the oldest moved to last month.
    Returns their ids by what they are."""
    with app.app_context():
        mina = User.get_by_id(world["mina"])
        rene, ana = User.get_by_id(world["rene"]), User.get_by_id(world["ana"])
        ids = {"funds": LedgerEntry.get(LedgerEntry.user == rene).id}
        old = run_replica(rene.id, world["tpu"], world["n1"], 3600, "=HYPERLINK(\"x\")",
                          running=False)
        ids["old_charge"] = old.charges.get().id
        last_month([ids["old_charge"], ids["funds"]])
        ids["ana_recharge"] = ledger.recharge(ana, 50 * MICRO, mina, "+start").id
        new = run_replica(ana.id, world["cpu"], world["n2"], 1800, "\teval", running=False)
        ids["new_charge"] = new.charges.get().id
        ids["adjust"] = ledger.adjust(rene, -MICRO, mina, "@typo").id
        ids["refund"] = ledger.adjust(ana, 2 * MICRO, mina, "-1 day", kind="refund").id
        ids["tasks"] = {"old": old.task_id, "new": new.task_id}
        return ids


def test_records_newest_first_with_every_detail(client, world, ledger_rows):
    as_miner(client)
    page = text(client.get(RECORDS))
    assert record_ids(page) == [ledger_rows[k] for k in (
        "refund", "adjust", "new_charge", "ana_recharge", "old_charge", "funds")]
    assert "tpu on n1, seconds 0–3600 of replica" in page and "7.00 UNC/h" in page
    assert "-7.00 UNC" in page and "@typo" in page and "test funds" in page
    assert link(page, "next") is None and link(page, "prev") is None


@pytest.mark.parametrize("query,expected", [
    ("user={rene}", ["adjust", "old_charge", "funds"]),
    ("user={ana}&kind=charge", ["new_charge"]),
    ("kind=refund", ["refund"]),
    ("kind=recharge", ["ana_recharge", "funds"]),
    ("task={old}", ["old_charge"]),
    ("task={old}&user={ana}", []),
    ("from={today}", ["refund", "adjust", "new_charge", "ana_recharge"]),
    ("to={yesterday_of_month}", ["old_charge", "funds"]),
    ("user={rene}&from={yesterday_of_month}&to={yesterday_of_month}", ["old_charge", "funds"]),
    ("user=&task=&kind=&from=&to=", ["refund", "adjust", "new_charge", "ana_recharge",
                                     "old_charge", "funds"]),
])
def test_records_filters(client, world, ledger_rows, query, expected):
    as_miner(client)
    values = {**world, **ledger_rows["tasks"], "today": utcnow().date().isoformat(),
              "yesterday_of_month": (records.month_start() - timedelta(days=1)).date()}
    response = client.get(f"{RECORDS}?{query.format(**values)}")
    assert response.status_code == 200
    assert record_ids(text(response)) == [ledger_rows[k] for k in expected]
    csv_ids = [int(row[0]) for row in csv_of(client.get(
        f"{RECORDS}.csv?{query.format(**values)}"))[1:]]
    assert csv_ids == [ledger_rows[k] for k in expected]


@pytest.mark.parametrize("query,message", [
    ("user=rene", "Choose a renter by their id, a whole number."),
    ("user=-1", "Choose a renter by their id, a whole number."),
    ("user=0", "Choose a renter by their id, a whole number."),
    ("task=1.5", "A task is given by its id, a whole number such as 42."),
    ("task=99999999999999999999", "A task is given by its id, a whole number such as 42."),
    ("kind=bonus", "The kind is one of: recharge, charge, adjust, refund."),
    ("from=31.01.2025", "Enter a date as YYYY-MM-DD, such as 2025-01-31."),
    ("to=2025-02-30", "Enter a date as YYYY-MM-DD, such as 2025-01-31."),
    ("from=2025-02-02&to=2025-02-01", "The last day is before the first day."),
])
def test_bad_filters_are_refused_with_a_message(client, world, ledger_rows, query, message):
    as_miner(client)
    response = client.get(f"{RECORDS}?{query}")
    assert response.status_code == 400
    page = text(response)
    assert message in page and record_ids(page) == [] and 'id="csv-link"' not in page
    response = client.get(f"{RECORDS}.csv?{query}")
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def walk(client, first_url):
    """Follow the "Older" links from ``first_url``; the ids of each page."""
    pages, url = [], first_url
    while url:
        page = text(client.get(url))
        pages.append(record_ids(page))
        url = link(page, "next")
    return pages


@pytest.mark.parametrize("query,kinds", [
    ("", None), ("?user={rene}", None), ("?kind=recharge", ["recharge"]),
    ("?kind=adjust", ["adjust"]), ("?from={today}", None), ("?to={today}&task=", None),
])
def test_records_page_by_50_with_older_and_newer_links(app, client, world, query, kinds):
    with app.app_context():
        rene, mina = User.get_by_id(world["rene"]), User.get_by_id(world["mina"])
        made = [(ledger.adjust(rene, MICRO, mina, f"a{n}") if n % 3 else
                 ledger.recharge(rene, MICRO, mina, f"r{n}")).id for n in range(239)]
        # Rows written within one tick share their time: the id breaks the tie. These
        # now come first by time, though not by id.
        LedgerEntry.update(at=utcnow()).where(LedgerEntry.id.in_(made[40:140])).execute()
        by_time = (LedgerEntry.select().where(LedgerEntry.kind.in_(kinds or LEDGER_KINDS))
                   .order_by(LedgerEntry.at.desc(), LedgerEntry.id.desc()))
        expected = [e.id for e in by_time]
    if not query:  # no filter: the order they were written in
        expected = sorted(expected, reverse=True)
    query = query.format(today=utcnow().date().isoformat(), **world)
    as_miner(client)
    pages = walk(client, RECORDS + query)
    assert [len(p) for p in pages] == [len(expected[i:i + 50])
                                       for i in range(0, len(expected), 50)]
    assert [i for p in pages for i in p] == expected
    # Back from the last page: "Newer" gives the one before again, then the one before it.
    last = text(client.get(f"{RECORDS}?before={pages[-2][-1]}&{query[1:]}"))
    assert record_ids(last) == pages[-1]
    newer = text(client.get(link(last, "prev")))
    assert record_ids(newer) == pages[-2]
    if len(pages) == 2:
        assert link(newer, "prev") is None
    else:
        assert record_ids(text(client.get(link(newer, "prev")))) == pages[-3]


# --- CSV -----------------------------------------------------------------------------------


def csv_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_has_every_row_exact_amounts_and_no_formulas(client, world, ledger_rows):
    as_miner(client)
    response = client.get(RECORDS + ".csv")
    assert response.is_streamed
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="hourglass-ledger-')
    table = csv_of(response)
    header = table[0]
    rows = {int(row[0]): dict(zip(header, row, strict=True)) for row in table[1:]}
    assert header[:6] == ["id", "at_utc", "renter", "kind", "amount", "balance_after"]
    assert list(rows) == [ledger_rows[k] for k in (
        "refund", "adjust", "new_charge", "ana_recharge", "old_charge", "funds")]
    old = rows[ledger_rows["old_charge"]]
    assert (old["renter"], old["kind"], old["amount"], old["balance_after"], old["currency"],
            old["task"], old["spec"], old["node"], old["price_per_hour"], old["seconds_to"]) == (
        "rene", "charge", "-7.00", "993.00", "UNC", "'=HYPERLINK(\"x\")", "tpu", "n1", "7.00",
        "3600")
    assert rows[ledger_rows["adjust"]]["note"] == "'@typo"
    assert rows[ledger_rows["adjust"]]["amount"] == "-1.00"  # a number stays a number
    assert rows[ledger_rows["adjust"]]["actor"] == "mina"
    assert rows[ledger_rows["refund"]]["note"] == "'-1 day"
    assert rows[ledger_rows["new_charge"]]["task"] == "'\teval"
    assert rows[ledger_rows["ana_recharge"]]["note"] == "'+start"
    assert rows[ledger_rows["new_charge"]]["amount"] == "-1.00"
    assert rows[ledger_rows["funds"]]["actor"] == ""


def test_csv_amounts_are_exact_to_the_micro_unit(app, client, world):
    with app.app_context():
        ledger.recharge(User.get_by_id(world["rene"]), 1_234_567_890_123_456, None, "-1+1")
    as_miner(client)
    rows = csv_of(client.get(RECORDS + ".csv?kind=recharge"))
    assert rows[1][4:6] == ["1234567890.123456", "1234568890.123456"]
    assert rows[1][8] == "'-1+1"


# --- earnings ------------------------------------------------------------------------------


def test_earnings_per_node_and_spec_this_month_and_all_time(app, client, world):
    with app.app_context():
        old = run_replica(world["rene"], world["tpu"], world["n1"], 3600, running=False)
        last_month([e.id for e in old.charges])
        run_replica(world["rene"], world["tpu"], world["n2"], 1800, running=False)  # 3.50
        run_replica(world["ana"], world["cpu"], world["n2"], 3600, running=False)  # 2.00
        ledger.adjust(User.get_by_id(world["rene"]), MICRO, None, "not an earning",
                      kind="refund")
    as_miner(client)
    page = re.sub(r"\s+", " ", text(client.get(PAGE + "/earnings")))

    def row(table, name):
        part = page.split(f'id="earnings-{table}"')[1].split("</table>")[0]
        return re.search(rf'<tr data-name="{name}">(.*?)</tr>', part).group(1)

    assert re.findall(r"([\d.,]+) UNC", row("by-node", "n1")) == ["0.00", "7.00"]
    assert re.findall(r"([\d.,]+) UNC", row("by-node", "n2")) == ["5.50", "5.50"]
    assert re.findall(r"([\d.,]+) UNC", row("by-spec", "tpu")) == ["3.50", "10.50"]
    assert re.findall(r"([\d.,]+) UNC", row("by-spec", "cpu")) == ["2.00", "2.00"]
    assert "<th>5.50 UNC</th><th>12.50 UNC</th>" in page.replace("> <", "><")


# --- the JSON API --------------------------------------------------------------------------


@pytest.fixture
def tokens(app, world):
    with app.app_context():
        return {name: create_token(User.get_by_id(world[name]), "test")[1]
                for name in ("mina", "rene")}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def api_error(response, status, code="invalid"):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code and response.json["error"]["message"]
    return response.json["error"]


def test_api_lists_renters_with_exact_balances(app, client, world, tokens):
    with app.app_context():
        run_replica(world["rene"], world["tpu"], world["n1"], 1)  # 0.001945: 7 UNC / 3600
    renters = client.get("/api/v1/billing/renters", headers=bearer(tokens["mina"])).json
    assert [r["name"] for r in renters] == ["ana", "rene"]
    rene = renters[1]
    assert (rene["balance"], rene["balance_decimal"], rene["used_this_month"],
            rene["running_replicas"], rene["spend_per_hour"]) == (
        FUNDS - 1945, "999.998055", 1945, 1, 7 * MICRO)
    api_error(client.get("/api/v1/billing/renters", headers=bearer(tokens["rene"])), 403,
              "forbidden")


def test_api_recharge_adjust_and_refund(app, client, world, tokens):
    miner = bearer(tokens["mina"])
    base = f"/api/v1/billing/renters/{world['rene']}"
    response = client.post(f"{base}/recharge", json={"amount": "12.5", "note": "=x"},
                           headers=miner)
    assert response.status_code == 201
    assert {k: response.json[k] for k in ("kind", "amount", "amount_decimal", "balance_after",
                                          "actor", "note", "user", "user_name")} == {
        "kind": "recharge", "amount": 12_500_000, "amount_decimal": "12.50",
        "balance_after": FUNDS + 12_500_000, "actor": "mina", "note": "=x",
        "user": world["rene"], "user_name": "rene"}
    response = client.post(f"{base}/adjust", json={"amount": "-3", "reason": "typo"},
                           headers=miner)
    assert response.status_code == 201 and response.json["kind"] == "adjust"
    assert response.json["amount"] == -3 * MICRO
    response = client.post(f"{base}/adjust", json={"amount": "1", "kind": "refund",
                                                   "reason": "crash"}, headers=miner)
    assert response.status_code == 201 and response.json["kind"] == "refund"
    assert balance(app, world["rene"]) == FUNDS + 10_500_000
    with app.app_context():
        assert ledger.verify() == []


@pytest.mark.parametrize("action,body,field,message,status", [
    ("recharge", {"amount": 12.5}, "amount", "'amount' must be a string.", 400),
    ("recharge", {}, "amount", "Missing field 'amount'.", 400),
    ("recharge", {"amount": "1", "extra": 1}, "extra", "Unknown field 'extra'.", 400),
    *[("recharge", {"amount": amount}, "amount", "an amount more than zero, at most 6 decimals",
       400) for amount in ("abc", "-1", "0", "0.0000001", "1e3", " 1", "9223372036854")],
    ("recharge", {"amount": "1", "note": "x" * 513}, "note", "at most 512 characters", 400),
    ("recharge", {"amount": "1", "note": "a\x00b"}, "note", "without NUL", 400),
    ("adjust", {"amount": "-3"}, "reason", "Missing field 'reason'.", 400),
    ("adjust", {"amount": "-3", "reason": " "}, "reason", "not only spaces", 400),
    ("adjust", {"amount": "0", "reason": "r"}, "amount", "not zero", 400),
    ("adjust", {"amount": "3", "reason": "r", "kind": "bonus"}, "kind",
     "must be one of: adjust, refund", 400),
    ("adjust", {"amount": "-3", "reason": "r", "kind": "refund"}, None,
     "The amount must be greater than zero.", 409),
])
def test_api_refuses_bad_bodies_and_writes_nothing(app, client, world, tokens, action, body,
                                                   field, message, status):
    """What the document refuses is 400 naming the field; a body it allows that the rules
    refuse (a negative refund) is 409. Nothing is written either way."""
    response = client.post(f"/api/v1/billing/renters/{world['rene']}/{action}", json=body,
                           headers=bearer(tokens["mina"]))
    error = api_error(response, status, "invalid_body" if status == 400 else "conflict")
    assert message in error["message"]
    if field:
        assert message in error["fields"][field]
    assert row_count(app) == 1 and balance(app, world["rene"]) == FUNDS


def test_api_unknown_user_miner_renter_token_and_csrf(app, client, world, tokens):
    miner = bearer(tokens["mina"])
    api_error(client.post("/api/v1/billing/renters/999999/recharge", json={"amount": "1"},
                          headers=miner), 404, "not_found")
    error = api_error(client.post(f"/api/v1/billing/renters/{world['mina']}/recharge",
                                  json={"amount": "1"}, headers=miner), 409, "conflict")
    assert "is a miner" in error["message"]
    api_error(client.post(f"/api/v1/billing/renters/{world['rene']}/recharge",
                          json={"amount": "1"}, headers=bearer(tokens["rene"])), 403, "forbidden")
    login(client, "miner", "mina", PASSWORD)  # a session must send the CSRF header
    api_error(client.post(f"/api/v1/billing/renters/{world['rene']}/recharge",
                          json={"amount": "1"}), 400, "csrf")
    header = {"X-CSRFToken": csrf_token(client, PAGE)}
    assert client.post(f"/api/v1/billing/renters/{world['rene']}/recharge",
                       json={"amount": "1"}, headers=header).status_code == 201
    assert row_count(app) == 2


def test_api_records_filter_and_page_by_100(app, client, world, tokens, ledger_rows):
    miner = bearer(tokens["mina"])
    url = "/api/v1/billing/records"
    got = client.get(f"{url}?user={world['ana']}", headers=miner).json
    assert [r["id"] for r in got["records"]] == [ledger_rows[k] for k in (
        "refund", "new_charge", "ana_recharge")]
    assert got["next_before_id"] is None
    charge = next(r for r in got["records"] if r["kind"] == "charge")
    assert (charge["task_name"], charge["spec"], charge["node"], charge["amount_decimal"],
            charge["price_per_hour"], charge["seconds_from"], charge["seconds_to"]) == (
        "\teval", "cpu", "n2", "-1.00", 2 * MICRO, 0, 1800)
    with app.app_context():
        ana, mina = User.get_by_id(world["ana"]), User.get_by_id(world["mina"])
        for n in range(150):
            ledger.recharge(ana, 1, mina, str(n))
    first = client.get(f"{url}?kind=recharge", headers=miner).json
    assert len(first["records"]) == 100
    second = client.get(f"{url}?kind=recharge&before_id={first['next_before_id']}",
                        headers=miner).json
    assert len(second["records"]) == 52 and second["next_before_id"] is None
    ids = [r["id"] for r in first["records"] + second["records"]]
    assert len(set(ids)) == 152 and ids[-2:] == [ledger_rows["ana_recharge"],
                                                 ledger_rows["funds"]]


@pytest.mark.parametrize("query,field", [
    ("user=x", "user"), ("task=-2", "task"), ("kind=tip", "kind"), ("from=2025-1-1", "from"),
    ("to=yesterday", "to"), ("before_id=abc", "before_id"),
])
def test_api_records_refuse_bad_parameters(client, world, tokens, query, field):
    error = api_error(client.get(f"/api/v1/billing/records?{query}",
                                 headers=bearer(tokens["mina"])), 400)
    assert error["fields"][field]
