"""The miner's overview, a dashboard: nodes Ready and NotReady with why, chips held and free
per kind, replicas, tasks and notebooks running and waiting, earnings today and this month,
the latest alerts in time order (a node NotReady, a replica lost, a failed start) with
their reasons as sentences, user counts, names escaped, and the same number of queries
however many rows there are. Rows are what discovery, the scheduler and the ledger write;
charges go through the real ``ledger.meter`` (``test_miner_billing``'s world)."""

import html
import re
from datetime import timedelta

import pytest

from portal import ledger, reasons
from portal.models import (
    CustomResource,
    EarningDay,
    LedgerEntry,
    Node,
    NodeChip,
    NodeEvent,
    Pool,
    Replica,
    ReplicaChip,
    ReplicaEvent,
    ResourceSpec,
    Subtask,
    Task,
    utcnow,
)
from portal.money import MICRO
from tests.unit import test_miner_billing as billing
from tests.unit.test_renter_billing import queries

world = billing.world
TPU, GPU = "sophgo.com/bm1684x", "nvidia.com/gpu"


def task_with(user_id, spec_id, states, name="train", kind="training", node_id=None):
    """A task of ``kind`` with one replica per state of ``states`` (on ``node_id``)."""
    task = Task.create(user=user_id, name=name, kind=kind, image="busybox",
                       pool=Pool.get(Pool.is_default), state=states[0])
    subtask = Subtask.create(task=task, role="main", spec=spec_id, count=len(states))
    return task, [Replica.create(task=task, subtask=subtask, index=n, state=state,
                                 node=node_id) for n, state in enumerate(states)]


def chips(node_id, kind, count, present=True):
    return [NodeChip.create(node=node_id, kind=kind, index=n, device=f"/dev/x{n}",
                            present=present) for n in range(count)]


def event(replica, state, at, reason, **params):
    """A replica's move to ``state`` at ``at``, its reason stored as the scheduler does."""
    ReplicaEvent.create(replica=replica, state=state, at=at,
                        reason=reasons.stored(reason, params))


@pytest.fixture
def cluster(app, world):
    """n1 Ready with 4 present TPU chips (2 held) and an absent one; n2 NotReady (a reason
    with markup) with 2 GPU chips; n3 disabled with chips that do not count. Work: a task
    with 2 replicas running, one with a replica starting and one pending (waiting), one
    with a replica running and one pending, a notebook run pending, and ended replicas.
    Earnings: 7.00 moved to last month, 2.00 to this month's first day, 3.50 today. Alerts
    from 50 minutes ago to 20, and twelve older ones; a failure after a run is no alert."""
    with app.app_context():
        now = utcnow()
        Node.update(ready=True, reason="").where(Node.id == world["n1"]).execute()
        Node.update(ready=False, reason="<script>alert(1)</script> refused",
                    ready_changed_at=now - timedelta(minutes=50)).where(
            Node.id == world["n2"]).execute()
        n3 = Node.create(name="n3", url="unix:///run/n3.sock", enabled=False)
        CustomResource.create(name="TPU 1684X", kind=TPU)
        tpus = chips(world["n1"], TPU, 4)
        NodeChip.create(node=world["n1"], kind=TPU, index=9, device="/dev/x9", present=False)
        chips(world["n2"], GPU, 2)
        chips(n3.id, GPU, 3)

        _t, both = task_with(world["rene"], world["tpu"], ["running", "running"],
                             node_id=world["n1"])
        for n, replica in enumerate(both):
            ReplicaChip.create(replica=replica, chip=tpus[n], slot=0)
        task_with(world["rene"], world["tpu"], ["starting", "pending"])
        task_with(world["ana"], world["cpu"], ["running", "pending"], node_id=world["n2"])
        task_with(world["ana"], world["cpu"], ["pending"], kind="notebook")
        _t, ended = task_with(world["rene"], world["cpu"], ["succeeded", "failed", "lost"])

        old = billing.run_replica(world["rene"], world["tpu"], world["n1"], 3600,
                                  running=False)
        first = billing.run_replica(world["ana"], world["cpu"], world["n2"], 3600,
                                    running=False)
        billing.run_replica(world["rene"], world["tpu"], world["n1"], 1800, running=False)
        billing.last_month([e.id for e in old.charges])
        for entry in first.charges:
            billing.move_earning(entry, ledger.month_start().date())

        NodeEvent.create(node=world["n2"], ready=False, at=now - timedelta(minutes=50),
                         reason="<script>alert(1)</script> refused")
        NodeEvent.create(node=world["n1"], ready=False, at=now - timedelta(minutes=40),
                         reason="Podman API not answering: timed out")
        NodeEvent.create(node=world["n1"], ready=True, at=now - timedelta(minutes=39))
        _t, (gone,) = task_with(world["rene"], world["tpu"], ["lost"], name="<b>evil</b>",
                                node_id=world["n1"])
        event(gone, "lost", now - timedelta(minutes=30), "node_silent", node="n1",
              since="12:00:00", detail="connection refused")
        _t, (never,) = task_with(world["ana"], world["cpu"], ["failed"], name="no-start",
                                 node_id=world["n2"])
        event(never, "failed", now - timedelta(minutes=20), "could_not_start",
              detail="no such image")
        Replica.update(started_ns=1).where(Replica.id == ended[1].id).execute()
        event(ended[1], "failed", now - timedelta(minutes=10), "exited", code=1)
        for n in range(12):
            NodeEvent.create(node=world["n2"], ready=False,
                             at=now - timedelta(hours=2, minutes=n), reason=f"old {n}")
        return {"gone": gone, "never": never, "now": now}


def page_of(client):
    billing.as_miner(client)
    response = client.get("/miner/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def part(page, marker, end="</article>"):
    """The page from ``marker`` to the next ``end``."""
    start = page.index(marker)
    return page[start:page.index(end, start)]


def words(markup):
    """``markup``'s text: tags dropped, entities read, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def test_nodes_chips_and_work_are_counted_from_their_rows(client, cluster, world):
    page = page_of(client)
    assert 'id="node-counts" data-ready="1" data-not-ready="1"' in page
    assert "Ready 1 NotReady 1 disabled 1" in words(part(page, 'id="node-counts"'))
    not_ready = part(page, 'id="not-ready"', "</section>")
    assert re.findall(r'data-node="([^"]+)"', not_ready) == ["n2"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; refused" in not_ready

    held_free = {kind: (int(held), int(free)) for kind, held, free in re.findall(
        r'<tr data-kind="([^"]+)">.*?data-held="(\d+)".*?data-free="(\d+)"', page, re.S)}
    assert held_free == {GPU: (0, 2), TPU: (2, 2)}
    assert "TPU 1684X" in page

    work = words(part(page, 'id="work"'))
    assert "Replicas: running 3 starting 1 pending 3" in work
    assert "Training tasks: 2 running , 1 waiting" in work
    assert "Notebooks: 0 running , 1 waiting" in work


def test_earnings_today_and_this_month_come_from_the_days(app, client, cluster):
    page = page_of(client)
    first_is_today = ledger.month_start().date() == utcnow().date()
    today = 3_500_000 + (2 * MICRO if first_is_today else 0)
    assert f'id="earnings" data-today="{today}" data-month="5500000"' in page
    shown = words(part(page, 'id="earnings"'))
    assert f"Today: {today / MICRO:.2f} UNC" in shown
    assert f"Since {ledger.month_start().date().isoformat()}: 5.50 UNC" in shown
    with app.app_context():
        assert sum(d.charged for d in EarningDay.select()) == -sum(
            e.amount for e in LedgerEntry.select().where(LedgerEntry.kind == "charge"))


def test_the_latest_alerts_newest_first_with_reasons_as_sentences(client, cluster, world):
    page = page_of(client)
    section = part(page, 'id="alerts"', "</section>")
    rows = re.findall(r'<tr data-alert="(\w+)">(.*?)</tr>', section, re.S)
    assert [what for what, _row in rows] == ["failed_start", "lost", "not_ready", "not_ready",
                                             *["not_ready"] * 6]
    failed, lost, n1, n2 = (html.unescape(re.sub(r"\s+", " ", row)) for _w, row in rows[:4])
    assert "could not start: no such image" in failed and "no-start" in failed
    assert f'/miner/nodes/{world["n2"]}' in failed and "its charges" not in failed
    assert "node n1 not answering since 12:00:00 (connection refused)" in lost
    assert f"replica={cluster['gone'].id}" in lost
    assert f"/miner/monitoring/tasks/{cluster['gone'].task_id}" in lost
    assert "timed out" in n1 and "refused" in n2
    assert "old 5" in rows[-1][1] and "old 6" not in section
    assert "exited with code" not in section  # a failure after it ran is no alert
    assert "&lt;b&gt;evil&lt;/b&gt;" in section and "<b>evil</b>" not in page
    assert '"code"' not in section


def test_user_counts_stay(client, cluster):
    page = page_of(client)
    counts = re.findall(r"<article><strong>(\d+)</strong>(\w+)</article>", page)
    assert counts == [("2", "renters"), ("1", "miners"), ("0", "groups")]


def test_an_empty_cluster_says_so(client, world):
    page = page_of(client)
    assert "No alerts" in page and 'data-today="0" data-month="0"' in page
    assert "No chips on the enabled nodes." in page
    assert 'id="node-counts" data-ready="0" data-not-ready="2"' in page  # not discovered yet


def test_a_renter_gets_403(client, world):
    from tests.conftest import PASSWORD
    from tests.support import login
    login(client, "renter", "rene", PASSWORD)
    assert client.get("/miner/").status_code == 403


def many_rows(app, world, n):
    """``n`` more of everything the overview reads: nodes, chips, replicas, events, days."""
    with app.app_context():
        now = utcnow()
        first = Node.select().count()
        Node.insert_many([{"name": f"bulk{first + i}", "url": f"unix:///b{first + i}.sock",
                           "ready": i % 2 == 0, "reason": "bulk"} for i in range(n)]).execute()
        ids = [i for (i,) in Node.select(Node.id).order_by(Node.id.desc()).limit(n).tuples()]
        NodeChip.insert_many([{"node": ids[i % n], "kind": GPU, "index": 100 + i,
                               "device": f"/dev/b{i}"} for i in range(n)]).execute()
        NodeEvent.insert_many([{"node": ids[i % n], "ready": i % 2 == 0,
                                "at": now - timedelta(days=1, seconds=i)}
                               for i in range(n)]).execute()
        task, replicas = task_with(world["rene"], world["cpu"], ["pending"] * 3)
        spec = ResourceSpec.get_by_id(world["cpu"])
        Subtask.update(count=n).where(Subtask.task == task).execute()
        Replica.insert_many([{"task": task, "subtask": replicas[0].subtask_id, "index": 3 + i,
                              "state": ("pending", "failed", "succeeded")[i % 3]}
                             for i in range(n)]).execute()
        rows = [r for (r,) in Replica.select(Replica.id).where(Replica.task == task).tuples()]
        ReplicaEvent.insert_many([{"replica": rows[i % len(rows)], "state": "failed",
                                   "at": now - timedelta(days=2, seconds=i)}
                                  for i in range(n)]).execute()
        EarningDay.insert_many([{"day": (now - timedelta(days=i)).date(), "node": 10_000 + i,
                                 "spec": spec.id, "charged": i} for i in range(n)]).execute()


def test_the_overview_costs_the_same_queries_at_two_sizes(app, client, cluster, world,
                                                          caplog):
    billing.as_miner(client)
    _response, few = queries(client, caplog, "/miner/")
    many_rows(app, world, 3000)
    response, lots = queries(client, caplog, "/miner/")
    assert lots == few
    assert 'data-not-ready="1501"' in response.get_data(as_text=True)
    print(f"miner overview queries: {lots}")
