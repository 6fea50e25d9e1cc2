"""The built-in charts: their JSON from the sample tables (values averaged per bucket, at most
~300 points, the window of a task's run), from a real Prometheus (label values escaped, the
CPU's rate window long enough for its scrapes), from the samples where Prometheus does not
answer or has no series for a chart, the miner's Monitoring pages (a Prometheus URL shown
without its password) and retention form, and who may read what: a renter only their own
task's and notebook's charts, never the miner's. The world is ``test_tasks``'s."""

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal import series, settings
from portal.models import (
    ChipSample,
    Node,
    NodeChip,
    NodeSample,
    Notebook,
    Pool,
    Replica,
    ReplicaSample,
    Subtask,
    Task,
)
from portal.prometheus import label
from tests.conftest import PASSWORD
from tests.monitoring import free_port
from tests.support import csrf_token, login, wait_for
from tests.unit import test_renter_billing as billing
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import add_node

world = shared.world
text = billing.text


def at(seconds):
    """Unix ``seconds`` as the naive UTC datetime the models store."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def node(name="box"):
    return Node.get(Node.name == name)


def by_key(answer):
    return {chart["key"]: chart for chart in answer["charts"]}


def values_of(chart, label_text):
    return next(s["values"] for s in chart["series"] if s["label"] == label_text)


def running_task(owner="rene", started_ago=600, replicas=2):
    """A task of ``owner`` whose replicas (worker/0..) run on box since ``started_ago`` s."""
    task = billing.submit(owner=owner, subtasks=[("worker", "1 TPU", replicas)])
    start = time.time() - started_ago
    for index in range(replicas):
        billing.place(task, "worker", index, "running", 1_000_000, start=int(start * 1e9),
                      seen=at(time.time()))
    Task.update(state="running").where(Task.id == task.id).execute()
    return task


def replica(task, index):
    return (Replica.select().join(Subtask)
            .where(Replica.task == task, Replica.index == index).get())


def miner(client):
    login(client, "miner", "mina", PASSWORD)
    return client


# --- from the sample tables ----------------------------------------------------------------


def test_a_nodes_charts_average_its_samples_per_bucket_within_the_window(app, world):
    with app.app_context():
        now = int(time.time())
        box, big = node("box"), node("big")
        rows = [{"node": box, "at": at(t), "cpu_ratio": 0.2 if t % 2 == 0 else 0.4,
                 "memory_used_bytes": 3 * 2**30, "memory_total_bytes": 16 * 2**30,
                 "chips_held": 2} for t in range(now - 1800, now)]
        rows.append({"node": box, "at": at(now - 7200), "cpu_ratio": 0.99, "chips_held": 4})
        rows.append({"node": big, "at": at(now - 60), "cpu_ratio": 0.99, "chips_held": 9})
        NodeSample.insert_many(rows).execute()
        chip0, chip1 = NodeChip.select().where(NodeChip.node == box).order_by(NodeChip.index)[:2]
        ChipSample.insert_many(
            [{"chip": chip0, "at": at(t), "util_ratio": 0.5, "temp_c": 40.0}
             for t in range(now - 120, now)]
            + [{"chip": chip1, "at": at(now - 30), "util_ratio": 0.25, "temp_c": 50.0}]).execute()

        answer = series.node_charts(box, "1h")
        charts = by_key(answer)
        assert answer["running"] is True and answer["source"] == "samples"
        assert answer["range"] == pytest.approx(3600, abs=12)
        assert list(charts) == ["cpu", "memory", "chips", "chip-util", "chip-temp"]  # no memory
        cpu = charts["cpu"]
        assert cpu["unit"] == "ratio" and cpu["series"][0]["label"] == "CPU"
        # 1800 one-second samples in 12 s buckets: 150 or 151 points, the whole ones exactly
        # the mean of 0.2 and 0.4; the sample of two hours ago and big's are not there
        assert 150 <= len(cpu["x"]) <= 151 and all(t % 12 == 0 for t in cpu["x"])
        assert all(v == pytest.approx(0.3) for v in cpu["series"][0]["values"][1:-1])
        assert max(cpu["series"][0]["values"]) < 0.5
        assert values_of(charts["memory"], "used")[5] == 3 * 2**30
        assert values_of(charts["memory"], "total")[5] == 16 * 2**30
        assert set(charts["chips"]["series"][0]["values"]) == {2}
        util = charts["chip-util"]
        assert [s["label"] for s in util["series"]] == ["chip 0", "chip 1"]
        assert [v for v in values_of(util, "chip 1") if v is not None] == [0.25]
        assert set(values_of(charts["chip-temp"], "chip 0")) == {40.0}
        assert set(values_of(charts["chip-temp"], "chip 1")) == {50.0, None}

        week = series.node_charts(box, "7d")
        cpu = by_key(week)["cpu"]
        step = series.window("7d").step
        assert step == 2016 and len(cpu["x"]) <= 3 and all(t % step == 0 for t in cpu["x"])
        # the week's buckets hold the old sample too
        assert len([v for v in cpu["series"][0]["values"] if v is not None]) >= 2
        assert len(by_key(series.node_charts(big, "1h"))["cpu"]["x"]) == 1


def test_a_window_has_at_most_about_300_points_for_every_range():
    for key, seconds in series.RANGES.items():
        win = series.window(key, end=1_800_000_000.5)
        assert (win.end - win.start) / win.step <= series.MAX_POINTS + 1
        assert win.start % win.step == 0 and win.end - win.start >= seconds
    assert series.chosen_range("1y") == series.DEFAULT_RANGE == "1h"
    assert series.range_from({"range": "6h"}) == "6h"
    assert series.range_from({}) == series.range_from({"range": "1y"}) == "1h"
    # a task's run of ten minutes: its window is the run, not the last hour
    run = series.window("1h", end=1_800_000_000, begin=1_800_000_000 - 600)
    assert run.step == 2 and run.end - run.start == 600


def test_a_tasks_charts_follow_its_run_per_replica_and_chip(app, world):
    with app.app_context():
        task = running_task(started_ago=600)
        first, second = replica(task, 0), replica(task, 1)
        now = int(time.time())
        ReplicaSample.insert_many(
            [{"replica": first, "at": at(t), "cpu_cores": 1.5, "memory_bytes": 100 * 2**20}
             for t in range(now - 590, now)]
            + [{"replica": second, "at": at(t), "cpu_cores": 0.5, "memory_bytes": None}
               for t in range(now - 300, now)]).execute()
        chip = NodeChip.get(NodeChip.node == node("box"), NodeChip.index == 3)
        ChipSample.insert_many([{"chip": chip, "replica": second, "at": at(t), "util_ratio": 0.8,
                                 "memory_used_bytes": 2**30} for t in range(now - 60, now)]
                               + [{"chip": chip, "replica": None, "at": at(now - 5),
                                   "util_ratio": 0.1}]).execute()

        answer = series.task_charts(task, "1h")
        charts = by_key(answer)
        assert answer["running"] is True
        assert answer["range"] == pytest.approx(600, abs=3)  # the run, shorter than an hour
        assert list(charts) == ["cpu", "memory", "chip-util", "chip-memory"]
        cpu = charts["cpu"]
        assert cpu["unit"] == "cores" and len(cpu["x"]) <= 301
        assert {v for v in values_of(cpu, "worker/0") if v is not None} == {1.5}
        assert {v for v in values_of(cpu, "worker/1") if v is not None} == {0.5}
        assert values_of(cpu, "worker/1")[0] is None  # it started sampling later
        assert all(v is None for v in values_of(charts["memory"], "worker/1"))
        util = charts["chip-util"]
        assert [s["label"] for s in util["series"]] == ["worker/1 · chip 3"]  # not the free one
        assert {round(v, 6) for v in util["series"][0]["values"] if v is not None} == {0.8}

        # ended two hours ago after a run of 20 minutes: the run is still what is shown
        ended = time.time() - 7200
        Replica.update(state="succeeded", finished_ns=int(ended * 1e9)).where(
            Replica.task == task).execute()
        Replica.update(started_ns=int((ended - 1200) * 1e9)).where(
            Replica.task == task).execute()
        ReplicaSample.create(replica=first, at=at(ended - 100), cpu_cores=3.0)
        later = series.task_charts(task, "1h")
        assert later["running"] is False
        assert later["end"] == pytest.approx(ended) and later["range"] == pytest.approx(1200, abs=4)
        assert {v for v in values_of(by_key(later)["cpu"], "worker/0") if v} == {3.0}


# --- who may read what ---------------------------------------------------------------------


@pytest.fixture
def two_renters(app, world):
    """rene's running task and notebook (one run), rita's running task."""
    with app.app_context():
        mine = running_task()
        ReplicaSample.create(replica=replica(mine, 0), at=at(time.time() - 5), cpu_cores=2.0)
        theirs = running_task(owner="rita")
        notebook = Notebook.create(user=billing.user("rene"), name="nb", image=shared.IMAGE,
                                   pool=Pool.get(Pool.name == "default"))
        Task.update(notebook=notebook, kind="notebook").where(Task.id == mine.id).execute()
        training = running_task()
        never = Notebook.create(user=billing.user("rene"), name="never", image=shared.IMAGE,
                                pool=Pool.get(Pool.name == "default"))
        return {"run": mine.id, "notebook": notebook.id, "task": training.id,
                "theirs": theirs.id, "never": never.id}


def test_a_renter_reads_only_their_own_charts_and_none_of_the_miners(client, app, two_renters):
    ids = two_renters
    billing.signed_in(client, "rene")
    mine = client.get(f"/renter/tasks/{ids['task']}/metrics.json")
    assert mine.status_code == 200 and mine.json["charts"][0]["key"] == "cpu"
    notebook = client.get(f"/renter/notebooks/{ids['notebook']}/metrics.json").json
    assert {v for v in values_of(by_key(notebook)["cpu"], "worker/0") if v} == {2.0}
    assert client.get(f"/renter/notebooks/{ids['never']}/metrics.json").json["charts"] == []
    page = text(client.get(f"/renter/tasks/{ids['task']}"))
    assert f'data-charts-url="/renter/tasks/{ids["task"]}/metrics.json"' in page
    assert "js/charts.js" in page and "<script>" not in page
    assert (f'data-charts-url="/renter/notebooks/{ids["notebook"]}/metrics.json"'
            in text(client.get(f"/renter/notebooks/{ids['notebook']}")))

    assert client.get(f"/renter/tasks/{ids['theirs']}/metrics.json").status_code == 404
    assert client.get(f"/renter/tasks/{ids['run']}/metrics.json").status_code == 404  # a run
    assert client.get("/renter/tasks/999999/metrics.json").status_code == 404
    for path in ("/miner/monitoring", f"/miner/monitoring/tasks/{ids['task']}",
                 f"/miner/monitoring/tasks/{ids['task']}/metrics.json",
                 f"/miner/monitoring/nodes/{ids['task']}/metrics.json"):
        assert client.get(path).status_code == 403, path

    rita = billing.signed_in(app.test_client(), "rita")
    assert rita.get(f"/renter/tasks/{ids['task']}/metrics.json").status_code == 404
    assert rita.get(f"/renter/notebooks/{ids['notebook']}/metrics.json").status_code == 404
    assert rita.get(f"/renter/tasks/{ids['theirs']}/metrics.json").status_code == 200


def test_the_miners_monitoring_page_charts_every_node_and_running_task(client, app, two_renters):
    with app.app_context():
        add_node("off", enabled=False)
        first, node_id = node("big").id, node("box").id  # by name: big comes first
    miner(client)
    page = text(client.get("/miner/monitoring"))
    assert "not built yet" not in page
    assert 'data-node="big"' in page and 'data-node="box"' in page and 'data-node="off"' not in page
    assert f'data-charts-url="/miner/monitoring/nodes/{first}/metrics.json"' in page
    chosen = text(client.get(f"/miner/monitoring?node={node_id}"))
    assert f'data-charts-url="/miner/monitoring/nodes/{node_id}/metrics.json"' in chosen
    assert "Hourglass&#39;s own samples, kept" in page or "Hourglass's own samples, kept" in page
    for task_id in (two_renters["task"], two_renters["theirs"], two_renters["run"]):
        assert f'href="/miner/monitoring/tasks/{task_id}"' in page
        task_page = text(client.get(f"/miner/monitoring/tasks/{task_id}"))
        assert f'data-charts-url="/miner/monitoring/tasks/{task_id}/metrics.json"' in task_page
        assert client.get(f"/miner/monitoring/tasks/{task_id}/metrics.json").json["running"]
    answer = client.get(f"/miner/monitoring/tasks/{two_renters['run']}/metrics.json?range=6h")
    assert {v for v in values_of(by_key(answer.json)["cpu"], "worker/0") if v} == {2.0}
    assert client.get(f"/miner/monitoring/nodes/{node_id}/metrics.json").json["charts"]
    assert client.get("/miner/monitoring/nodes/999999/metrics.json").status_code == 404
    assert client.get("/miner/monitoring/tasks/999999").status_code == 404


def test_the_retention_form_takes_1_to_365_days_with_its_token(client, app, world):
    miner(client)
    token = csrf_token(client, "/miner/monitoring")
    for typed in ("0", "366", "ten", "", "1.5"):
        refused = client.post("/miner/monitoring/retention", data={"csrf_token": token,
                                                                  "days": typed})
        assert refused.status_code == 400, typed
        assert "Enter whole days from 1 to 365." in text(refused)
    assert client.post("/miner/monitoring/retention", data={"days": "30"}).status_code == 400
    with app.app_context():
        assert settings.get("sample_retention_days") == settings.DEFAULTS["sample_retention_days"]
    saved = client.post("/miner/monitoring/retention", data={"csrf_token": token, "days": "30"})
    assert saved.status_code == 303
    with app.app_context():
        assert settings.get("sample_retention_days") == "30"
    assert "kept 30 days" in text(client.get("/miner/monitoring"))


# --- from Prometheus -----------------------------------------------------------------------


class Exposition:
    """A small HTTP server answering /metrics with ``text`` (Prometheus's text format)."""

    def __init__(self, text):
        body = text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


WEIRD = 'rack "1"\\a'  # a node name that must be escaped inside PromQL


def test_the_charts_come_from_prometheus_when_there_is_one(client, app, world, prometheus):
    with app.app_context():
        task = running_task()
        weird = add_node(WEIRD, chips=1)
        ids = {"task": task.id, "weird": weird.id, "box": node("box").id}
        now = time.time()
        # Hourglass's own samples of both nodes; Prometheus has none of box's
        NodeSample.insert_many([{"node": n, "at": at(now - ago), "cpu_ratio": 0.25,
                                 "chips_held": 3} for n in (weird, node("box"))
                                for ago in (30, 20, 10)]).execute()
    replica_label = f"{task.id}/worker/0"
    exposition = Exposition(
        f'hourglass_replica_cpu_cores{{replica="{replica_label}",task="{task.id}",node="box"}} '
        "1.5\n"
        f'hourglass_replica_memory_bytes{{replica="{replica_label}",task="{task.id}",'
        'node="box"} 104857600\n'
        f'hourglass_replica_cpu_cores{{replica="{task.id + 1}/worker/0"}} 7\n'
        f'hourglass_chip_utilization_ratio{{node={label(WEIRD)},kind="k",chip="0",'
        f'replica="{replica_label}"}} 0.75\n'
        f'hourglass_chips_held{{node={label(WEIRD)},pool="default",kind="k"}} 1\n'
        f'node_memory_MemTotal_bytes{{node={label(WEIRD)}}} 1000\n'
        f'node_memory_MemAvailable_bytes{{node={label(WEIRD)}}} 400\n'
        # an idle counter that never grows: the node's CPU is all in use
        f'node_cpu_seconds_total{{cpu="0",mode="idle",node={label(WEIRD)}}} 1000\n')
    try:
        server = prometheus(static=[exposition.target])
        app.config["PROMETHEUS_URL"] = server.url
        billing.signed_in(client, "rene")

        def charted():
            answer = client.get(f"/renter/tasks/{ids['task']}/metrics.json").json
            cpu = by_key(answer).get("cpu")
            return answer if cpu and any(values_of(cpu, "worker/0")) else None

        answer = wait_for(charted, timeout=40, interval=0.5, what="Prometheus's series")
        assert answer["source"] == "prometheus" and answer["note"] == ""
        charts = by_key(answer)
        assert {v for v in values_of(charts["cpu"], "worker/0") if v is not None} == {1.5}
        assert not any(values_of(charts["cpu"], "worker/1"))  # no series: empty
        assert {v for v in values_of(charts["memory"], "worker/0") if v} == {104857600}
        assert [s["label"] for s in charts["chip-util"]["series"]] == ["worker/0 · chip 0"]

        client = miner(app.test_client())

        def node_charted():
            got = by_key(client.get(f"/miner/monitoring/nodes/{ids['weird']}/metrics.json").json)
            cpu = got.get("cpu")
            return got if cpu and cpu["source"] == "prometheus" and any(
                cpu["series"][0]["values"]) else None

        charts = wait_for(node_charted, timeout=40, interval=0.5, what="the node's CPU")
        assert {v for v in charts["cpu"]["series"][0]["values"] if v is not None} == {1.0}
        assert {v for v in values_of(charts["memory"], "used") if v} == {600}
        assert {v for v in charts["chips"]["series"][0]["values"] if v} == {1}
        assert {c["source"] for c in charts.values()} == {"prometheus"}
        assert "Prometheus at " + server.url in text(client.get("/miner/monitoring"))

        # no series of box in Prometheus: its charts are Hourglass's own samples, saying so
        box = client.get(f"/miner/monitoring/nodes/{ids['box']}/metrics.json").json
        assert box["source"] == "samples"
        cpu = by_key(box)["cpu"]
        assert cpu["source"] == "samples" and "Prometheus has no series" in cpu["note"]
        assert {v for v in cpu["series"][0]["values"] if v is not None} == {0.25}

        server.stop()  # Prometheus gone: the charts are Hourglass's own samples, saying why
        gone = client.get(f"/miner/monitoring/nodes/{ids['weird']}/metrics.json").json
        assert gone["source"] == "samples"
        assert gone["note"].startswith("Prometheus did not answer (ConnectionError)")
        assert {v for v in values_of(by_key(gone)["chips"], "chips held") if v} == {3}
    finally:
        exposition.close()


def test_without_an_answer_from_prometheus_the_charts_are_hourglasss_samples(client, app,
                                                                            two_renters):
    closed = f"http://reader:s3cret@127.0.0.1:{free_port()}"  # nothing listens there
    app.config["PROMETHEUS_URL"] = closed
    with app.app_context():
        box = node("box")
        NodeSample.insert_many([{"node": box, "at": at(time.time() - ago), "cpu_ratio": 0.5,
                                 "memory_used_bytes": 2**30} for ago in (20, 10)]).execute()
    miner(client)
    answer = client.get(f"/miner/monitoring/nodes/{box.id}/metrics.json").json
    assert answer["source"] == "samples"
    assert answer["note"] == ("Prometheus did not answer (ConnectionError): these are "
                              "Hourglass's own samples.")
    charts = by_key(answer)
    assert {c["source"] for c in charts.values()} == {"samples"}
    assert {c["note"] for c in charts.values()} == {answer["note"]}
    assert {v for v in charts["cpu"]["series"][0]["values"] if v is not None} == {0.5}
    assert {v for v in values_of(charts["memory"], "used") if v} == {2**30}

    task = client.get(f"/miner/monitoring/tasks/{two_renters['run']}/metrics.json").json
    assert task["source"] == "samples" and task["note"] == answer["note"]
    assert {v for v in values_of(by_key(task)["cpu"], "worker/0") if v} == {2.0}

    page = text(client.get("/miner/monitoring"))
    assert f"Prometheus at {closed.replace('reader:s3cret@', '')}." in page
    assert "s3cret" not in page and "reader" not in page


def test_the_node_cpu_rate_window_holds_four_scrapes_and_a_step(app):
    with app.app_context():
        app.config["SAMPLE_SECONDS"] = 15.0
        assert series.cpu_window(series.window("1h").step) == 60  # a step of 12 s
        assert series.cpu_window(series.window("7d").step) == 2016
        app.config["SAMPLE_SECONDS"] = 30.0
        assert series.cpu_window(series.window("6h").step) == 120  # a step of 72 s
        assert series.cpu_window(series.window("24h").step) == 288
    assert "[{seconds}s]" in series.NODE_CPU and "[1m]" not in series.NODE_CPU


def test_promql_label_values_are_escaped():
    assert label('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'



def test_grafanas_panels_stand_above_the_miners_charts_and_never_on_a_renters(client, app,
                                                                             two_renters):
    app.config.update(GRAFANA_URL="http://grafana.lab.example:3000", GRAFANA_TOKEN="glsa_x")
    miner(client)
    page = text(client.get("/miner/monitoring"))
    assert 'id="grafana-panels"' in page and "http://grafana.lab.example:3000/d-solo/" in page
    assert page.index('id="grafana-panels"') < page.index('id="node-charts"')
    task_id = two_renters["task"]
    task_page = text(client.get(f"/miner/monitoring/tasks/{task_id}"))
    assert f"var-task={task_id}" in task_page
    assert task_page.index('id="grafana-panels"') < task_page.index('id="run-charts"')
    renter = billing.signed_in(app.test_client(), "rene")
    mine = text(renter.get(f"/renter/tasks/{task_id}"))
    assert 'id="run-charts"' in mine and "grafana" not in mine.lower()
