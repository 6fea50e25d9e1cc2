"""The built-in charts in a real Chromium, on a live server whose scheduler runs a busybox
task on real Podman and samples every second (a fake Sophgo tree for the chips, the host's
own CPU counters): the miner's Monitoring page draws the node's charts, its chips' included,
and the renter's running task page draws the task's, each with data, a table of the same
figures, and no CSP violation; a notebook's charts that show no run are fetched again every
minute, so a run started later shows without a reload. Screenshots of both pages are kept in
tests/artifacts."""

import re
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from tests.conftest import ARTIFACTS, PASSWORD
from tests.e2e.helpers import heading, menu_links, query, scheduling_server, sign_in
from tests.fake_hosts import make_sophgo_host
from tests.integration.test_replica_io import api
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# How much of a chart's canvas is drawn in a series' colour (the first is blue, the second red).
COLOURED = """(selector) => {
  const canvas = document.querySelector(selector);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
    if (a > 0 && (b > r + 60 || r > b + 60)) coloured++;
  }
  return coloured;
}"""


@pytest.fixture
def lab(live_server_factory, tmp_path):
    """A live server sampling every second, its local node with two fake BM1684X chips and
    the host's real CPU and memory counters."""
    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 2)])
    for name in ("stat", "cpuinfo", "meminfo"):
        (host / "proc" / name).symlink_to(f"/proc/{name}")
    server, _miner = scheduling_server(live_server_factory, host, HOURGLASS_SAMPLE_SECONDS="1")
    renter = server.flask("token", "create", "rene").stdout.strip()
    return SimpleNamespace(server=server, renter=renter)


def count(server, sql):
    return query(server, sql)[0][0]


def drawn(page, chart):
    """``chart`` (a figure of the charts) has points and a canvas with its lines on it."""
    expect(chart.locator(".uplot canvas")).to_have_count(1)
    assert int(chart.get_attribute("data-points")) > 0
    key = chart.get_attribute("data-key")
    section = chart.locator("xpath=ancestor::section[1]").get_attribute("id")
    assert page.evaluate(COLOURED, f'#{section} figure[data-key="{key}"] canvas') > 20
    expect(chart.locator(".chart-plot")).to_have_attribute("role", "img")


def keep(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"test_monitoring-{name}.png", full_page=True)


def test_the_miners_monitoring_page_charts_the_node_and_its_chips(page, lab):
    server = lab.server
    wait_for(lambda: count(server, "SELECT COUNT(*) FROM node_samples "
                                   "WHERE cpu_ratio IS NOT NULL") >= 2
             and count(server, "SELECT COUNT(*) FROM chip_samples") >= 4,
             timeout=30, interval=0.5, what="node and chip samples")
    sign_in(page, server.url, "miner", "mina", PASSWORD)
    menu_links(page).get_by_text("Monitoring", exact=True).click()
    expect(heading(page)).to_have_text("Monitoring")
    expect(page.locator("#monitoring-source")).to_contain_text(
        "Hourglass's own samples, kept 7 days")
    charts = page.locator("#node-charts")
    for key in ("cpu", "memory", "chips", "chip-util", "chip-temp"):
        drawn(page, charts.locator(f'figure[data-key="{key}"]'))
    # the driver's files give a chip's memory in all, not what is in use: no such chart
    expect(charts.locator('figure[data-key="chip-memory"]')).to_have_count(0)
    temps = charts.locator('figure[data-key="chip-temp"]')
    expect(temps.locator(".chart-plot")).to_have_attribute(
        "aria-label", "Chip temperature, latest: chip 0 40.0 °C; chip 1 41.0 °C")
    temps.locator("summary").click()
    expect(temps.locator(".chart-table thead")).to_contain_text("chip 1")
    expect(temps.locator(".chart-table tbody tr").first).to_contain_text("40.0 °C")

    charts.get_by_role("button", name="24h").click()
    expect(charts.get_by_role("button", name="24h")).to_have_attribute("aria-pressed", "true")
    expect(charts.get_by_role("button", name="1h")).to_have_attribute("aria-pressed", "false")
    drawn(page, charts.locator('figure[data-key="memory"]'))
    keep(page, "miner")


def test_a_running_tasks_page_charts_its_replica(page, new_page, lab, test_image):
    server = lab.server
    task = api(server, lab.renter, "POST", "/tasks", {
        "name": "sleeper", "image": test_image, "argv": ["sleep", "600"], "pool": "default",
        "subtasks": [{"role": "main", "spec": "small", "replicas": 1}]})
    wait_for(lambda: count(server, "SELECT COUNT(*) FROM replica_samples s JOIN replicas r "
                                   f"ON s.replica_id = r.id WHERE r.task_id = {task['id']} "
                                   "AND s.cpu_cores IS NOT NULL") >= 2,
             timeout=60, interval=0.5, what="the task's replica samples")
    sign_in(page, server.url, "renter", "rene", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    page.goto(f"{server.url}/renter/tasks/{task['id']}")
    charts = page.locator("#run-charts")
    for key in ("cpu", "memory"):
        drawn(page, charts.locator(f'figure[data-key="{key}"]'))
    expect(charts.locator('figure[data-key="memory"] .chart-plot')).to_have_attribute(
        "aria-label", re.compile(r"^Memory, latest: main/0 [\d.]+ (B|KiB|MiB)$"))
    expect(charts.locator(".charts-status")).to_contain_text("refreshes every 15 s")
    keep(page, "renter-task")
    # while it runs, the charts are fetched again (every 15 s) and keep their data
    expect(charts).to_have_attribute("data-loaded", "2", timeout=40_000)
    drawn(page, charts.locator('figure[data-key="cpu"]'))

    # The miner finds it among what runs now, with the same charts.
    miner = new_page()
    sign_in(miner, server.url, "miner", "mina", PASSWORD)
    expect(miner.locator("#logout")).to_be_visible()
    miner.goto(f"{server.url}/miner/monitoring")
    miner.locator(f'#running-tasks tr[data-task="{task["id"]}"] a').click()
    expect(heading(miner)).to_have_text("sleeper")
    drawn(miner, miner.locator('#run-charts figure[data-key="cpu"]'))


def test_a_notebooks_charts_without_a_run_look_again_every_minute(page, lab, test_image):
    notebook = api(lab.server, lab.renter, "POST", "/notebooks", {
        "name": "later", "image": test_image, "spec": "small", "pool": "default",
        "start": False})
    page.clock.install()  # the page's timers run when the test says
    sign_in(page, lab.server.url, "renter", "rene", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    page.goto(f"{lab.server.url}/renter/notebooks/{notebook['id']}")
    charts = page.locator("#run-charts")
    expect(charts).to_have_attribute("data-loaded", "1")
    expect(charts).to_have_attribute("data-running", "")
    page.clock.run_for(61_000)
    expect(charts).to_have_attribute("data-loaded", "2")
