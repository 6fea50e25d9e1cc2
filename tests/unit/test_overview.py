"""The renter's overview: counts per state, machine-time, latest runs and recharges, what runs
now with its cost, the spend chart's figures, quick-create links, owner isolation, and a
bounded number of queries however many tasks there are. The world is ``test_tasks``'s;
money moves through ``portal.ledger`` (``meter`` after the replica rows a scheduler writes)."""

import json
import re
from datetime import timedelta

import pytest

from portal import ledger
from portal import overview as read
from portal.models import LedgerEntry, Notebook, Pool, Task, User, utcnow
from portal.money import MICRO
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.unit import test_renter_billing as billing
from tests.unit import test_tasks as shared

world = shared.world
signed_in, text, place, submit, queries = (billing.signed_in, billing.text, billing.place,
                                           billing.submit, billing.queries)


def user(name):
    return User.get(User.name == name)


def notebook(owner, name, run_state=None):
    """A notebook row of ``owner``, with one run in ``run_state`` (None: never started)."""
    nb = Notebook.create(user=user(owner), name=name, image=shared.IMAGE,
                         pool=Pool.get(Pool.name == "default"))
    if run_state:
        Task.create(user=user(owner), kind="notebook", name=name, image=shared.IMAGE,
                    pool=nb.pool, notebook=nb, state=run_state)
    return nb


def charged_for(app, task_id):
    with app.app_context():
        return -sum(e.amount for e in LedgerEntry.select().where(LedgerEntry.task == task_id))


@pytest.fixture
def filled(app, world):
    """rene: a running task (one replica at 3.6/h, metered), a succeeded one, a notebook
    running and one never started; rita: a running task and a notebook of her own."""
    with app.app_context():
        now = ledger.to_ns(utcnow())
        running = submit(name="<b>live</b>", subtasks=[("worker", "1 TPU", 1)])
        place(running, "worker", 0, "running", 3_600_000, start=now - 100 * 10**9,
              seen=utcnow())
        Task.update(state="running").where(Task.id == running.id).execute()
        done = submit(name="done", subtasks=[("worker", "1 TPU", 1)])
        place(done, "worker", 0, "succeeded", 1_000_000, start=now - 7200 * 10**9,
              end=now - 3600 * 10**9 + 1)
        Task.update(state="succeeded").where(Task.id == done.id).execute()
        theirs = submit(name="rita-secret", owner="rita", subtasks=[("worker", "1 TPU", 1)])
        place(theirs, "worker", 0, "running", 9_000_000, start=now - 50 * 10**9,
              seen=utcnow())
        Task.update(state="running").where(Task.id == theirs.id).execute()
        notebook("rene", "nb-on", "running")
        notebook("rene", "nb-new")
        notebook("rita", "rita-notebook", "running")
        ledger.meter()
        return {"running": running.id, "done": done.id, "theirs": theirs.id}


def test_the_overview_counts_and_lists_the_renters_own_work(client, app, filled):
    signed_in(client, "rene")
    page = text(client.get("/renter/"))
    tasks_part = page[page.index('id="task-counts"'):page.index('id="notebook-counts"')]
    assert 'data-total="2"' in tasks_part
    assert re.search(r'data-count="running">.*?</span> 1', tasks_part, re.S)
    assert re.search(r'data-count="succeeded">.*?</span> 1', tasks_part, re.S)
    notebooks_part = page[page.index('id="notebook-counts"'):]
    assert 'data-total="2"' in notebooks_part and 'data-count="never started"' in notebooks_part
    running = page[page.index('id="running-now"'):]
    running = running[:running.index("</table>")]
    assert f'data-task="{filled["running"]}"' in running and "&lt;b&gt;live&lt;/b&gt;" in running
    charged = {name: charged_for(app, filled[name]) for name in ("running", "done")}
    assert charged["running"] >= 100  # 3.6 per hour is 1 micro-unit per second: 100 s
    assert f'data-charged="{charged["running"]}"' in running and "1 TPU" in running
    latest = page[page.index('id="latest-runs"'):]
    assert f'data-task="{filled["done"]}"' in latest
    assert f'data-charged="{charged["done"]}"' in latest and charged["done"] > MICRO
    assert 'id="latest-recharges"' in page and "test funds" in page
    assert "will appear here as this cloud grows" not in page
    assert "rita-secret" not in page and "rita-notebook" not in page
    assert f'data-task="{filled["theirs"]}"' not in page
    assert 'id="running-part" hx-get="/renter/" hx-trigger="every 5s"' in page
    part = text(client.get("/renter/", headers={"HX-Request": "true"}))
    assert 'id="running-part"' in part[:300]
    assert f'data-task="{filled["running"]}"' in part and "<html" not in part
    assert "rita-secret" not in part


def test_the_spend_chart_has_thirty_days_ending_today(client, app, filled):
    signed_in(client, "rene")
    page = text(client.get("/renter/"))
    series = json.loads(re.search(r"data-series='([^']*)'", page).group(1))
    today = utcnow().date()
    assert len(series[0]) == read.DAYS == len(series[1])
    assert series[0][-1] == today.isoformat()
    assert series[0][0] == (today - timedelta(days=29)).isoformat()
    with app.app_context():
        spent = -sum(e.amount for e in LedgerEntry.select().where(
            LedgerEntry.user == user("rene"), LedgerEntry.kind == "charge"))
    assert spent > 0 and sum(series[1]) == spent
    assert f'data-day="{today.isoformat()}" data-micro="{series[1][-1]}"' in page


def test_spend_per_day_groups_charges_by_day(app, world):
    with app.app_context():
        rene = user("rene")
        today = utcnow().date()
        for days_ago, amount in ((0, 5), (0, 7), (3, 11), (40, 13)):
            LedgerEntry.create(user=rene, kind="charge", amount=-amount, balance_after=0,
                               at=utcnow() - timedelta(days=days_ago))
        days = dict(read.spend_per_day(rene, today=today))
    assert days[today] == 12 and days[today - timedelta(days=3)] == 11
    assert sum(days.values()) == 23 and len(days) == 30


def test_quick_create_buttons_lead_to_the_create_pages(client, world):
    signed_in(client, "rene")
    page = text(client.get("/renter/"))
    links = dict(re.findall(r'href="([^"]+)" data-create="(\w+)"', page))
    links = {page_name: url for url, page_name in links.items()}
    assert links["notebooks"] == "/renter/notebooks/new"
    assert links["tasks"] == "/renter/tasks/new"
    assert set(links) == {"notebooks", "tasks", "templates", "algorithms", "datasets", "images"}
    for url in links.values():
        assert client.get(url).status_code == 200


def test_a_new_renter_with_nothing_is_told_to_recharge_not_that_work_stopped(client, app,
                                                                           world):
    with app.app_context():
        create_user("nora", "renter", PASSWORD)
    signed_in(client, "nora")
    page = text(client.get("/renter/"))
    assert 'id="low-balance"' in page
    assert "stopped" not in page[page.index('id="low-balance"'):page.index("</p>", page.index(
        'id="low-balance"'))]
    assert "Your balance is 0.00 UNC: ask your miner to recharge before you start" in page
    assert "Nothing runs now." in page and "Nothing has run yet." in page


def test_the_overview_costs_the_same_queries_for_ten_and_ten_thousand_tasks(client, app, world,
                                                                            caplog):
    signed_in(client, "rene")
    client.get("/renter/")
    with app.app_context():
        billing.many_tasks(10)
        ledger.meter()
    _response, few = queries(client, caplog, "/renter/")
    with app.app_context():
        billing.many_tasks(10_000)
        ledger.meter()
    response, lots = queries(client, caplog, "/renter/")
    assert lots == few
    page = text(response)
    assert 'id="task-counts" data-total="10010"' in page
    print(f"overview queries at 10,010 tasks: {lots}")


def test_money_shows_two_decimals_and_the_exact_amount_on_hover(client, app, world):
    with app.app_context():
        rene = user("rene")
        ledger.adjust(rene, 373_333, user("mina"), "odd amount")
    signed_in(client, "rene")
    page = text(client.get("/renter/"))
    balance = re.search(r'id="balance"[^>]*>.*?<strong>(.*?)</strong>', page, re.S).group(1)
    assert balance == '<span class="money" title="1,000.373333">1,000.37</span>'
    assert '<span class="money" title="0.373333">0.37</span>' in page


def test_money_never_reads_zero_when_it_is_not(app):
    from portal.money import rounded_amount
    from portal.presenters import money_html

    assert rounded_amount(1) == "< 0.01" and rounded_amount(-1) == "> -0.01"
    assert rounded_amount(0) == "0.00" and rounded_amount(5_000) == "0.01"
    assert rounded_amount(-1_234_565_000) == "-1,234.57"
    assert str(money_html(3_600_000)) == "3.60"
    assert str(money_html(30_000)) == "0.03"
    assert str(money_html(1)) == '<span class="money" title="0.000001">&lt; 0.01</span>'
    assert MICRO == 1_000_000
