"""The lab's Grafana (``portal.grafana``): contract tests against tests.fake_grafana, a local
server that answers as Grafana's documented HTTP API does and checks what grafana-client
sends. Provisioning makes the data source, the folder and both dashboards by their fixed
uids, and again updates rather than duplicates; Grafana down, refusing the token or too
slow is a clear error and the portal works on; a Prometheus URL's password never in what is
said or logged; the embed URLs, the Content-Security-Policy's frame-src on the miner's pages
with panels only, their frames, and no frames of a Grafana on the portal's own origin.
"""

import html
import json
import logging
import re
import socket
from pathlib import Path

import pytest
import requests
from flask import render_template, url_for
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaBadInputError,
    GrafanaClientError,
    GrafanaUnauthorizedError,
    TokenAuth,
)

from app import _housekeeping
from portal import grafana
from portal.grafana import DATASOURCE_UID, GrafanaError
from scheduler.service import SchedulerService
from tests.conftest import PASSWORD, create_accounts
from tests.fake_grafana import FakeGrafana
from tests.support import login, wait_for
from tests.unit.test_headers import assert_portal_headers, policy

PROMETHEUS = "http://prometheus.lab.example:9090"
DASHBOARD_FILES = Path(grafana.__file__).parent / "grafana_dashboards"
EMBED_TAIL = "from=now-1h&to=now&refresh=30s&theme=light"


@pytest.fixture
def fake():
    server = FakeGrafana()
    yield server
    server.stop()


def app_with(request, monkeypatch, **env):
    """The conftest ``app``, made with these environment settings (after ``instance``
    cleared the caller's): a test that uses it asks for no ``app``, ``client`` or
    ``accounts`` of its own."""
    request.getfixturevalue("instance")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return request.getfixturevalue("app")


@pytest.fixture
def lab(request, monkeypatch, fake):
    """The app of a lab whose Grafana is ``fake``, with a Prometheus to point it at."""
    return app_with(request, monkeypatch, GRAFANA_URL=fake.url, GRAFANA_TOKEN=fake.token,
                    PROMETHEUS_URL=PROMETHEUS)


def reader(fake):
    """grafana-client on the fake, to read back what provisioning left, as a user would."""
    return GrafanaApi.from_url(fake.url, credential=TokenAuth(fake.token))


def the_app_still_answers(app):
    assert app.test_client().get("/miner/login").status_code == 200


# --- provisioning --------------------------------------------------------------------------


def test_provisioning_makes_the_data_source_the_folder_and_both_dashboards(lab, fake):
    done = grafana.provision(lab)

    source = reader(fake).datasource.get_datasource_by_uid(DATASOURCE_UID)
    assert (source["type"], source["access"], source["url"]) == ("prometheus", "proxy",
                                                                 PROMETHEUS)
    assert [folder["title"] for folder in reader(fake).folder.get_all_folders()] == ["Hourglass"]
    found = reader(fake).search.search_dashboards(query="Hourglass")
    assert sorted(hit["uid"] for hit in found) == ["hourglass-cluster", "hourglass-task"]
    assert {hit["folderUid"] for hit in found} == {grafana.FOLDER_UID}
    assert done == [
        f"Data source Hourglass Prometheus created, reading {PROMETHEUS}.",
        f"Dashboard Hourglass cluster: {fake.url}/d/hourglass-cluster/hourglass-cluster",
        f"Dashboard Hourglass task: {fake.url}/d/hourglass-task/hourglass-task",
    ]
    # The token went in the Authorization header only (the fake refuses anything else).
    assert all(fake.token not in path for path in fake.paths())


def test_provisioning_again_updates_and_never_duplicates(lab, fake):
    grafana.provision(lab)
    lab.config["PROMETHEUS_URL"] = "http://elsewhere.lab.example:9090"
    done = grafana.provision(lab)

    assert done[0] == "Data source Hourglass Prometheus updated, reading " \
                      "http://elsewhere.lab.example:9090."
    assert list(fake.datasources) == [DATASOURCE_UID]
    assert fake.datasources[DATASOURCE_UID]["url"] == "http://elsewhere.lab.example:9090"
    assert fake.paths("POST").count("/api/datasources") == 1
    assert fake.paths("PUT") == [f"/api/datasources/uid/{DATASOURCE_UID}"]
    assert fake.paths("POST").count("/api/folders") == 1 and len(fake.folders) == 1
    assert sorted(fake.dashboards) == ["hourglass-cluster", "hourglass-task"]
    assert {kept["version"] for kept in fake.dashboards.values()} == {2}
    saves = [body for verb, path, body in fake.received if path == "/api/dashboards/db"]
    assert len(saves) == 4 and all(body["overwrite"] is True for body in saves)


def test_a_prometheus_urls_password_is_neither_said_nor_logged(lab, fake, caplog):
    lab.config["PROMETHEUS_URL"] = "http://reader:s3cret@prometheus.lab.example:9090"
    with caplog.at_level(logging.INFO, logger="portal.grafana"):
        grafana.keep_provisioned(lab)
    assert lab.extensions.get(grafana.PROVISIONED)
    assert f"reading {PROMETHEUS}." in caplog.text
    assert "s3cret" not in caplog.text and "reader" not in caplog.text
    done = grafana.provision(lab)
    assert done[0] == f"Data source Hourglass Prometheus updated, reading {PROMETHEUS}."


def test_a_hourglass_folder_made_by_hand_is_used_not_doubled(lab, fake):
    fake.folders["by-hand"] = {"id": 99, "uid": "by-hand", "title": "Hourglass"}
    grafana.provision(lab)
    assert "/api/folders" not in fake.paths("POST")
    assert {kept["folderUid"] for kept in fake.dashboards.values()} == {"by-hand"}


def test_the_task_dashboard_has_a_task_variable_that_every_query_uses(lab, fake):
    grafana.provision(lab)
    task = reader(fake).dashboard.get_dashboard("hourglass-task")["dashboard"]
    cluster = reader(fake).dashboard.get_dashboard("hourglass-cluster")["dashboard"]

    assert [variable["name"] for variable in task["templating"]["list"]] == ["task"]
    assert task["templating"]["list"][0]["datasource"]["uid"] == DATASOURCE_UID
    task_queries = [t["expr"] for panel in task["panels"] for t in panel["targets"]]
    assert task_queries and all("$task" in expr for expr in task_queries)
    metrics = {"hourglass_replica_cpu_cores", "hourglass_replica_memory_bytes",
               "hourglass_chip_utilization_ratio", "hourglass_chip_temperature_celsius"}
    assert {re.match(r"\w+", expr).group() for expr in task_queries} == metrics
    assert cluster["templating"]["list"] == []
    cluster_queries = " ".join(t["expr"] for panel in cluster["panels"] for t in panel["targets"])
    for metric in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes",
                   "hourglass_chips_held", "hourglass_chips_free", "hourglass_replicas",
                   "hourglass_queue_wait_seconds_bucket",
                   "hourglass_scheduler_pass_seconds_bucket"):
        assert metric in cluster_queries
    assert "$task" not in cluster_queries


def test_panel_ids_are_the_files_own_and_every_query_reads_hourglass_prometheus():
    for name in grafana.DASHBOARDS:
        kept = json.loads((DASHBOARD_FILES / f"{name}.json").read_text())
        assert kept["uid"] == f"hourglass-{name}" and "id" not in kept
        ids = [panel["id"] for panel in kept["panels"]]
        assert ids == list(range(1, len(ids) + 1))  # stable: embed URLs name them
        for panel in kept["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {DATASOURCE_UID}


# --- faults --------------------------------------------------------------------------------


def closed_url():
    """An http URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("fault, message", [
    ("token", "refused GRAFANA_TOKEN (401)"),
    ("500", "failed: Server Error 500: Internal Server Error"),
    ("slow", "did not answer within 0.3 s"),
    ("down", "cannot be reached"),
])
def test_a_failing_grafana_is_a_clear_error_and_the_portal_works_on(lab, fake, fault, message,
                                                                    caplog):
    if fault == "token":
        lab.config["GRAFANA_TOKEN"] = "glsa_not_the_right_one_0000000000"
    elif fault == "500":
        fake.fail(500)
    elif fault == "slow":
        fake.slow(2)
    else:
        lab.config["GRAFANA_URL"] = closed_url()

    with pytest.raises(GrafanaError) as error:
        grafana.provision(lab, timeout=0.3)
    assert message in str(error.value) and "Grafana at http://127.0.0.1:" in str(error.value)
    assert lab.config["GRAFANA_TOKEN"] not in str(error.value)
    assert fake.dashboards == {}

    # The leader's chore logs it, raises nothing, and tries again next time.
    with caplog.at_level(logging.WARNING, logger="portal.grafana"):
        grafana.keep_provisioned(lab, timeout=0.3)
    assert "Grafana provisioning failed" in caplog.text and message in caplog.text
    assert lab.config["GRAFANA_TOKEN"] not in caplog.text
    assert not lab.extensions.get(grafana.PROVISIONED)
    the_app_still_answers(lab)


def test_the_leader_provisions_once_per_process_after_a_failure_is_mended(lab, fake):
    fake.fail(503)
    grafana.keep_provisioned(lab)
    fake.heal()
    grafana.keep_provisioned(lab)
    assert sorted(fake.dashboards) == ["hourglass-cluster", "hourglass-task"]
    asked = len(fake.received)
    grafana.keep_provisioned(lab)  # done in this process: Grafana is not asked again
    assert len(fake.received) == asked


def test_a_configured_lab_is_provisioned_as_soon_as_the_scheduler_leads(lab, fake):
    service = SchedulerService(enabled=True, tick_seconds=60, lease_seconds=15,
                               housekeeping=lambda: _housekeeping(lab))
    with lab.app_context():
        service.start()
        try:
            wait_for(lambda: len(fake.dashboards) == 2, what="the dashboards in Grafana")
        finally:
            service.shutdown()
    assert lab.extensions[grafana.PROVISIONED]


def test_the_cli_provisions_and_reports_a_failure_on_exit_1(lab, fake):
    runner = lab.test_cli_runner()
    result = runner.invoke(args=["grafana", "provision"])
    assert result.exit_code == 0, result.output
    assert "Dashboard Hourglass task:" in result.output

    fake.fail(500)
    result = runner.invoke(args=["grafana", "provision"])
    assert result.exit_code == 1
    assert "Error: Grafana at" in result.output and "Server Error 500" in result.output
    assert fake.token not in result.output


def test_without_grafana_nothing_is_asked_and_the_cli_says_what_to_set(app, fake):
    assert not grafana.configured(app)
    grafana.keep_provisioned(app)
    result = app.test_cli_runner().invoke(args=["grafana", "provision"])
    assert result.exit_code == 1 and "set GRAFANA_URL and GRAFANA_TOKEN" in result.output
    with app.test_request_context():
        assert grafana.panels("cluster") == []
    assert fake.received == []


def test_without_a_prometheus_grafana_is_not_asked(request, monkeypatch, fake):
    app = app_with(request, monkeypatch, GRAFANA_URL=fake.url, GRAFANA_TOKEN=fake.token)
    with pytest.raises(GrafanaError, match="set PROMETHEUS_URL or run `make monitoring`"):
        grafana.provision(app)
    assert fake.received == []


# --- embedding -----------------------------------------------------------------------------


@pytest.fixture
def far_lab(request, monkeypatch):
    """A lab whose Grafana sits under a path, named with a user:password@ part."""
    return app_with(request, monkeypatch,
                    GRAFANA_URL="https://viewer:s3cret@grafana.lab.example/tools/grafana",
                    GRAFANA_TOKEN="glsa_secret_token_0123456789abcdef")


def test_embed_urls_are_grafanas_solo_panels_without_any_secret(far_lab):
    base = "https://grafana.lab.example/tools/grafana"
    with far_lab.test_request_context():
        cluster = grafana.panels("cluster")
        task = grafana.panels("task", task=42)
        odd = grafana.panels("task", task="a b&c/é")
        with pytest.raises(ValueError):
            grafana.panels("task")

    assert cluster == [f"{base}/d-solo/hourglass-cluster/hourglass-cluster?orgId=1&panelId={n}"
                       f"&{EMBED_TAIL}" for n in range(1, 7)]
    assert task == [f"{base}/d-solo/hourglass-task/hourglass-task?orgId=1&panelId={n}"
                    f"&var-task=42&{EMBED_TAIL}" for n in range(1, 5)]
    assert [panel.title for panel in task] == ["CPU per replica", "Memory per replica",
                                               "Chip utilisation", "Chip temperature"]
    assert task[0].dashboard == f"{base}/d/hourglass-task/hourglass-task?orgId=1&var-task=42" \
                                f"&{EMBED_TAIL}"
    assert odd[0] == f"{base}/d-solo/hourglass-task/hourglass-task?orgId=1&panelId=1" \
                     f"&var-task=a+b%26c%2F%C3%A9&{EMBED_TAIL}"
    for url in [*cluster, *task, task[0].dashboard]:
        assert "glsa_" not in url and "s3cret" not in url and "viewer" not in url


def test_without_grafana_no_page_frames_another_origin(client):
    assert "frame-src" not in policy(client.get("/miner/login"))  # default-src 'self' rules


def test_with_grafana_only_the_miners_pages_with_panels_frame_it(far_lab):
    create_accounts(far_lab)
    for path in ("/miner/login", "/renter/login", "/api/v1/openapi.json"):
        answer = far_lab.test_client().get(path)
        assert "frame-src" not in policy(answer), path
    assert_portal_headers(far_lab.test_client().get("/miner/login"))
    miner = far_lab.test_client()
    login(miner, "miner", "mina", PASSWORD)
    answer = miner.get("/miner/monitoring")
    assert_portal_headers(answer)
    assert policy(answer)["frame-src"] == ["'self'", "https://grafana.lab.example"]
    assert "frame-src" not in policy(miner.get("/miner/nodes"))


def test_a_grafana_on_the_portals_own_origin_is_not_framed(request, monkeypatch, caplog):
    app = app_with(request, monkeypatch, GRAFANA_URL="http://localhost/grafana",
                   GRAFANA_TOKEN="glsa_secret_token_0123456789abcdef")
    create_accounts(app)
    client = app.test_client()
    login(client, "miner", "mina", PASSWORD)
    with caplog.at_level(logging.WARNING, logger="portal.grafana"):
        first = client.get("/miner/monitoring")
        second = client.get("/miner/monitoring")
        with app.test_request_context(base_url="http://localhost:80"):
            assert grafana.panels("cluster") == []
        with app.test_request_context(base_url="http://localhost:8080"):  # another origin
            assert grafana.panels("cluster")
        app.config["PORTAL_URL"] = "http://LOCALHOST"  # the origin browsers see, behind a proxy
        with app.test_request_context(base_url="http://127.0.0.1:8000"):
            assert grafana.panels("cluster") == []
    for answer in (first, second):
        assert answer.status_code == 200
        assert 'id="grafana-panels"' not in answer.get_data(as_text=True)
        assert "frame-src" not in policy(answer)
    assert caplog.text.count("Grafana's panels are not embedded") == 1
    assert "portal's own origin" in caplog.text and "glsa_" not in caplog.text


def test_the_partial_frames_each_panel_with_its_title_and_the_sign_in_note(far_lab):
    with far_lab.test_request_context():
        panels = grafana.panels("task", task=7)
        page = render_template("components/grafana_panels.html", grafana_panels=panels)

    frames = re.findall(r"<iframe [^>]*>", page)
    assert [html.unescape(re.search(r'src="([^"]+)"', f).group(1)) for f in frames] == panels
    assert all('loading="lazy"' in frame for frame in frames)
    titles = [html.unescape(re.search(r'title="([^"]+)"', f).group(1)) for f in frames]
    assert titles == [f"Grafana: {panel.title}" for panel in panels]
    assert "signed in to it" in page and html.escape(panels[0].dashboard) in page
    assert "glsa_" not in page


def test_the_miners_monitoring_page_embeds_the_cluster_panels(request, monkeypatch, fake):
    app = app_with(request, monkeypatch, GRAFANA_URL=fake.url, GRAFANA_TOKEN=fake.token)
    create_accounts(app)
    client = app.test_client()
    login(client, "miner", "mina", PASSWORD)
    with app.test_request_context():
        path = url_for("miner.monitoring")
    answer = client.get(path)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert page.count(f'src="{fake.url}/d-solo/hourglass-cluster/') == 6
    assert policy(answer)["frame-src"] == ["'self'", fake.url]
    assert fake.token not in page


def test_the_fake_refuses_what_grafana_would(fake):
    """The contract server itself: without it refusing, the tests above could not fail."""
    answer = requests.get(f"{fake.url}/api/folders", timeout=5)
    assert (answer.status_code, answer.json()) == (401, {"message": "invalid API key"})
    with pytest.raises(GrafanaUnauthorizedError):
        GrafanaApi.from_url(fake.url, credential=TokenAuth("wrong")).folder.get_all_folders()
    api = reader(fake)
    with pytest.raises(GrafanaBadInputError, match="access is required"):
        api.datasource.create_datasource({"name": "p", "type": "prometheus", "url": PROMETHEUS})
    board = json.loads((DASHBOARD_FILES / "task.json").read_text())
    with pytest.raises(GrafanaBadInputError, match="no data source"):
        api.dashboard.update_dashboard({"dashboard": board, "overwrite": True})
    api.datasource.create_datasource({"uid": DATASOURCE_UID, "name": "p", "type": "prometheus",
                                      "access": "proxy", "url": PROMETHEUS})
    with pytest.raises(GrafanaBadInputError, match="no variable task"):
        api.dashboard.update_dashboard({"dashboard": {**board, "templating": {"list": []}},
                                        "overwrite": True})
    with pytest.raises(GrafanaBadInputError, match="dashboard.uid is required"):
        api.dashboard.update_dashboard({"dashboard": {**board, "uid": ""}, "overwrite": True})
    api.dashboard.update_dashboard({"dashboard": board, "overwrite": False})
    with pytest.raises(GrafanaClientError, match="412: A dashboard with the same uid"):
        api.dashboard.update_dashboard({"dashboard": board, "overwrite": False})
