"""``make monitoring``'s stack: the generated Prometheus config, real Prometheus scraping a
real Hourglass server and real node-exporters, and ``flask monitoring run`` as a process."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import requests

from portal import db
from portal.db import open_database
from portal.models import Node
from portal.prometheus_stack import (
    prometheus_url,
    refresh_targets,
    start_beside,
    write_config,
    write_targets,
)
from tests.conftest import PASSWORD, ROOT
from tests.integration.test_replica_io import api
from tests.monitoring import free_port, query, start_node_exporter, wait_for_series
from tests.support import CSRF_RE, LOGIN_PATH, wait_for

TOKEN = "a-scrape-token-for-tests-0123456789"
SECRETS = {"GRAFANA_TOKEN": "a-grafana-token-for-tests", "SECRET_KEY": "k" * 40,
           "PROMETHEUS_MULTIPROC_DIR": "/nonexistent/multiproc"}


def node_groups(path):
    return {group["labels"]["node"]: group["targets"] for group in json.loads(path.read_text())}


def children_of(pid):
    return {int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def environment(pid):
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if entry)


def gone(pid):
    """Whether process ``pid`` has ended (a zombie no one reaped yet has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def listening():
    """``listen(host, port)``: a socket listening there for the test, as another program."""
    sockets = []

    def listen(host, port):
        sock = socket.socket()
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()

    yield listen
    for sock in sockets:
        sock.close()


def test_generated_config_passes_promtool_and_lists_every_node(app):
    app.config.update(METRICS_TOKEN=TOKEN, NODE_EXPORTER_PORT=9100)
    with app.app_context():
        Node.create(name="here", url="unix:///run/podman.sock", source="local")
        Node.create(name="far", url="ssh://lab@192.0.2.7/run/podman.sock", address="192.0.2.7")
        Node.create(name="new", url="tcp://[2001:db8::5]:8888")  # not discovered yet
        config_path, targets = write_config(app)
    checked = subprocess.run(["promtool", "check", "config", str(config_path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    hourglass = json.loads(config_path.read_text())["scrape_configs"][0]
    token_file = Path(hourglass["authorization"]["credentials_file"])
    assert token_file.read_text() == TOKEN and TOKEN not in config_path.read_text()
    assert token_file.stat().st_mode & 0o077 == 0
    assert node_groups(targets) == {"here": ["127.0.0.1:9100"], "far": ["192.0.2.7:9100"],
                                    "new": ["[2001:db8::5]:9100"]}


def test_targets_stay_while_the_database_fails_and_heal_after(app, tmp_path):
    targets = Path(app.instance_path) / "monitoring" / "nodes.json"
    with app.app_context():
        db.database.execute_sql("ALTER TABLE nodes RENAME TO nodes_away")  # not set up yet
        write_targets(app)
        assert node_groups(targets) == {}
        db.database.execute_sql("ALTER TABLE nodes_away RENAME TO nodes")
        Node.create(name="here", url="unix:///run/podman.sock", source="local")
        refresh_targets(app)
        assert node_groups(targets) == {"here": [f"127.0.0.1:{app.config['NODE_EXPORTER_PORT']}"]}
        db.database.connection().close()  # as when the database server restarts
        refresh_targets(app)
        assert list(node_groups(targets)) == ["here"]  # kept, not emptied
        reachable = db.database.obj
        db.database.initialize(open_database(f"sqlite:///{tmp_path}/absent/hourglass.db"))
        try:
            refresh_targets(app)  # as while the database server is down: no connection
        finally:
            db.database.initialize(reachable)
        assert list(node_groups(targets)) == ["here"]
        Node.create(name="far", url="ssh://lab@192.0.2.7/run/podman.sock", address="192.0.2.7")
        refresh_targets(app)
        assert list(node_groups(targets)) == ["far", "here"]


@pytest.mark.parametrize("setting, host", [("NODE_EXPORTER_PORT", "127.0.0.1"),
                                           ("PROMETHEUS_PORT", "0.0.0.0")])
def test_monitoring_run_stops_at_once_when_a_port_is_taken(app, runner, listening, setting,
                                                           host):
    app.config.update(PROMETHEUS_PORT=free_port(), NODE_EXPORTER_PORT=free_port())
    port = app.config[setting]
    listening(host, port)  # as Debian's own service, on every interface
    result = runner.invoke(args=["monitoring", "run"])
    assert result.exit_code == 1
    assert f"port {port} is in use" in result.stderr
    assert "systemctl disable --now prometheus prometheus-node-exporter" in result.stderr
    assert not (Path(app.instance_path) / "monitoring" / "prometheus.url").exists()


def test_monitoring_warns_when_hourglass_would_refuse_its_scrapes(app, runner, listening,
                                                                   monkeypatch):
    monkeypatch.setenv("HOST", "192.0.2.1")
    config = runner.invoke(args=["monitoring", "config"])
    assert config.exit_code == 0
    assert "HOST is 192.0.2.1" in config.stderr and "HOURGLASS_METRICS_TOKEN" in config.stderr
    app.config["PROMETHEUS_PORT"] = free_port()
    listening("127.0.0.1", app.config["PROMETHEUS_PORT"])  # so that run stops at once
    assert "HOST is 192.0.2.1" in runner.invoke(args=["monitoring", "run"]).stderr
    app.config["METRICS_TOKEN"] = TOKEN
    assert runner.invoke(args=["monitoring", "config"]).stderr == ""
    app.config["METRICS_TOKEN"] = ""
    monkeypatch.setenv("HOST", "0.0.0.0")  # scraped on loopback
    assert runner.invoke(args=["monitoring", "config"]).stderr == ""
    app.config["METRICS_LOOPBACK"] = False
    assert "HOURGLASS_METRICS_LOOPBACK is off" in runner.invoke(
        args=["monitoring", "config"]).stderr


def test_the_stack_gets_no_secrets_and_dies_with_a_killed_run(app, monkeypatch):
    for name, value in {**SECRETS, "HOURGLASS_METRICS_TOKEN": TOKEN,
                        "HOURGLASS_PROMETHEUS_PORT": str(free_port()),
                        "HOURGLASS_NODE_EXPORTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    run = start_beside(app)
    programs = set()
    try:
        wait_for(lambda: run.process.poll() is None and prometheus_url(app), timeout=60,
                 what="the stack to be up")
        programs = children_of(run.process.pid)
        assert len(programs) == 2
        env = environment(run.process.pid)
        assert env["HOURGLASS_METRICS_TOKEN"] == TOKEN  # it writes Prometheus's token file
        assert "GRAFANA_TOKEN" not in env and "PROMETHEUS_MULTIPROC_DIR" not in env
        assert env["SECRET_KEY"] != SECRETS["SECRET_KEY"]
        for pid in programs:
            assert set(environment(pid)) <= {"PATH", "HOME", "LANG"}
        run.process.send_signal(signal.SIGKILL)
        run.process.wait()
        wait_for(lambda: all(gone(pid) for pid in programs), timeout=20,
                 what="prometheus and node-exporter to end with the killed run")
        assert prometheus_url(app) == ""
    finally:
        run.stop()
        for pid in programs:  # what a failure left
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.podman
def test_prometheus_reads_hourglass_and_each_node(live_server_factory, prometheus):
    exporter = prometheus.node_exporter()
    server = live_server_factory(accounts=True, HOURGLASS_DISCOVERY_SECONDS="1",
                                 HOURGLASS_SAMPLE_SECONDS="1",
                                 HOURGLASS_NODE_EXPORTER_PORT=str(exporter.port)).start()
    database = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"

    def local_node():
        with closing(sqlite3.connect(database)) as db:
            row = db.execute("SELECT name FROM nodes WHERE source = 'local'").fetchone()
        return row and row[0]

    name = wait_for(local_node, timeout=30, what="discovery to add the local node")
    config_path = Path(server.flask("monitoring", "config").stdout.split()[0])
    stack = prometheus(config=config_path)
    replicas = wait_for_series(stack.url, 'hourglass_replicas{job="hourglass"}')
    assert {series["metric"]["instance"] for series in replicas} == {f"127.0.0.1:{server.port}"}
    cpu = wait_for_series(stack.url, f'node_cpu_seconds_total{{node="{name}"}}')
    assert {series["metric"]["instance"] for series in cpu} == {exporter.target}


def test_monitoring_run_finds_new_nodes_and_leaves_nothing_behind(app, tmp_path):
    exporter_port = free_port()
    port = free_port()
    env = {**os.environ, "HOURGLASS_PROMETHEUS_PORT": str(port),
           "HOURGLASS_NODE_EXPORTER_PORT": str(exporter_port), "HOURGLASS_SAMPLE_SECONDS": "1",
           "HOURGLASS_DISCOVERY_SECONDS": "0.2", "HOURGLASS_INSTANCE": app.instance_path}
    with app.app_context():
        Node.create(name="here", url="unix:///run/podman.sock", source="local")
    with open(tmp_path / "monitoring-run.log", "wb") as log:
        run = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "monitoring",
                                "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    far, children = None, set()
    try:
        url = wait_for(lambda: run.poll() is None and prometheus_url(app), timeout=60,
                       what="the stack to be up")
        assert url == f"http://127.0.0.1:{port}"
        children = children_of(run.pid)
        assert len(children) == 2
        wait_for_series(url, 'node_cpu_seconds_total{node="here"}')

        with app.app_context():
            Node.create(name="far", url="ssh://lab@127.0.0.2/run/podman.sock")
        targets = Path(app.instance_path) / "monitoring" / "nodes.json"
        wait_for(lambda: "far" in node_groups(targets), what="the new node's target")
        assert node_groups(targets)["far"] == [f"127.0.0.2:{exporter_port}"]
        far = start_node_exporter(tmp_path, "127.0.0.2", exporter_port)
        series = wait_for_series(url, 'node_cpu_seconds_total{node="far"}')
        assert {s["metric"]["instance"] for s in series} == {far.target}
        assert not query(url, 'node_cpu_seconds_total{node="nowhere"}')
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(30)
        if far:
            far.stop()
    assert prometheus_url(app) == ""
    for child in children:
        assert not Path(f"/proc/{child}").exists(), f"process {child} outlived the stack"


@pytest.mark.podman
def test_serve_with_monitoring_runs_the_stack_beside_it(live_server_factory):
    port = free_port()
    server = live_server_factory(accounts=True, HOURGLASS_MONITORING="on",
                                 HOURGLASS_PROMETHEUS_PORT=str(port),
                                 HOURGLASS_NODE_EXPORTER_PORT=str(free_port()),
                                 HOURGLASS_SAMPLE_SECONDS="1").start()
    url_file = Path(server.env["HOURGLASS_INSTANCE"]) / "monitoring" / "prometheus.url"
    wait_for(url_file.exists, timeout=60, what="the stack beside the server")
    url = url_file.read_text().split()[0]
    assert url == f"http://127.0.0.1:{port}"
    wait_for_series(url, 'hourglass_replicas{job="hourglass"}')
    stack = {pid for pid in children_of(server.process.pid)
             if "monitoring" in Path(f"/proc/{pid}/cmdline").read_text()}
    assert len(stack) == 1
    programs = children_of(next(iter(stack)))
    assert len(programs) == 2
    server.close()
    assert not url_file.exists()
    for pid in stack | programs:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the server"


def signed_in(server, role, name):
    """A requests session signed in to ``server`` through its real login form."""
    session = requests.Session()
    path = LOGIN_PATH[role]
    token = CSRF_RE.search(session.get(f"{server.url}{path}", timeout=10).text).group(1)
    answer = session.post(f"{server.url}{path}", timeout=10,
                          data={"name": name, "password": PASSWORD, "csrf_token": token})
    assert answer.ok and "Sign out" in answer.text, answer.text[:500]
    return session


@pytest.mark.podman
def test_a_running_tasks_chart_comes_from_prometheus(live_server_factory, prometheus,
                                                     test_image, tmp_path):
    """The whole path: the leader samples a real container, /metrics exposes it, a real
    Prometheus scrapes it, and the renter's chart endpoint reads it back from Prometheus."""
    server = live_server_factory(accounts=True, HOURGLASS_TICK_SECONDS="0.2",
                                 HOURGLASS_DISCOVERY_SECONDS="1", HOURGLASS_SAMPLE_SECONDS="1",
                                 HOURGLASS_HOST_ROOT=str(tmp_path))
    stack = prometheus(hourglass=[f"127.0.0.1:{server.port}"])
    server.env["PROMETHEUS_URL"] = stack.url
    miner = server.flask("token", "create", "mina").stdout.strip()
    renter = server.flask("token", "create", "rene").stdout.strip()
    server.start()
    wait_for(lambda: any(n["ready"] for n in api(server, miner, "GET", "/nodes")), timeout=30,
             what="the local node to be Ready")
    api(server, miner, "POST", "/specs",
        {"name": "small", "cpu": "0.1", "memory_gb": "0.125", "price": "1"})
    task = api(server, renter, "POST", "/tasks", {
        "name": "charted", "image": test_image, "pool": "default",
        "argv": ["sh", "-c", "while true; do :; done"],
        "subtasks": [{"role": "main", "spec": "small", "replicas": 1}]})["id"]
    wait_for(lambda: api(server, renter, "GET", f"/tasks/{task}")["state"] == "running",
             timeout=60, what="the task to run")
    wait_for_series(stack.url, f'hourglass_replica_memory_bytes{{task="{task}"}}')

    session = signed_in(server, "renter", "rene")

    def charts():
        answer = session.get(f"{server.url}/renter/tasks/{task}/metrics.json", timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        memory = {chart["key"]: chart for chart in body["charts"]}.get("memory") or {}
        values = [v for s in memory.get("series", []) for v in s["values"] if v]
        return body if values and memory["source"] == "prometheus" else None

    body = wait_for(charts, timeout=60, interval=1, what="the task's memory from Prometheus")
    assert body["source"] in ("prometheus", "mixed") and body["running"]
    memory = {chart["key"]: chart for chart in body["charts"]}["memory"]
    assert [s["label"] for s in memory["series"]] == ["main/0"]
    assert max(v for v in memory["series"][0]["values"] if v) > 0
    other = session.get(f"{server.url}/renter/tasks/{task + 1000}/metrics.json", timeout=10)
    assert other.status_code == 404
    api(server, renter, "POST", f"/tasks/{task}/stop")
