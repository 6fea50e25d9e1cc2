"""Working in a notebook: JupyterLab in Chromium, on real Podman, with a fake TPU.

A live server (scheduler on) whose local node has three fake BM1684X chips, and specs
"lab" (CPU only) and "tpu2" (two chips). The renter drives the portal's pages and
JupyterLab's own UI: a saved notebook keeps its cell and output across Stop and Start
(and lies in the notebook's folder on the host); a cell sees the spec's chips and only
those; a notebook of two subtasks offers one Open per subtask, each landing in JupyterLab
of its own container.
"""

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from portal.notebook_folders import code_folder
from scheduler.podman import PodmanBackend
from tests.conftest import ARTIFACTS, PASSWORD
from tests.e2e.helpers import (
    new_jupyter_notebook,
    open_jupyterlab,
    query,
    run_cell,
    sign_in,
)
from tests.fake_hosts import make_sophgo_host
from tests.integration.test_replica_io import api
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.podman]

TPU = "TPU 1684X"
SAVED_AS = "work.ipynb"


@pytest.fixture
def cloud(live_server_factory, podman_service, jupyter_image, tmp_path):
    """A live server with its scheduler on, a local node with 3 fake BM1684X chips, specs
    "lab" (1 CPU, 1 GB) and "tpu2" (1 CPU, 1 GB, 2 chips), renter rene; (server, the
    host's chip nodes). The notebooks' containers are removed at the end."""
    host = tmp_path / "host"
    chips = make_sophgo_host(host, cards=[("0x1686", 3)])
    server = live_server_factory(accounts=True, HOURGLASS_TICK_SECONDS="0.2",
                                 HOURGLASS_DISCOVERY_SECONDS="1", HOURGLASS_HOST_ROOT=str(host))
    miner = server.flask("token", "create", "mina").stdout.strip()
    server.start()
    wait_for(lambda: any(n["ready"] for n in api(server, miner, "GET", "/nodes")), timeout=30,
             what="the local node to be Ready")
    api(server, miner, "POST", "/resources", {"name": TPU, "kind": "sophgo.com/bm1684x"})
    api(server, miner, "POST", "/specs",
        {"name": "lab", "cpu": "1", "memory_gb": "1", "price": "1"})
    api(server, miner, "POST", "/specs",
        {"name": "tpu2", "cpu": "1", "memory_gb": "1", "price": "1", "resources": {TPU: 2}})
    wait_for(lambda: all(s["fits_somewhere"] for s in api(server, miner, "GET", "/specs")),
             timeout=30, what="the specs to fit the local node")
    yield server, chips
    backend = PodmanBackend(podman_service.url)
    for (container,) in query(server, "SELECT container FROM replicas WHERE container != ''"):
        backend.remove(container)


@pytest.fixture
def screenshots(request):
    """``keep(page, name)``: pages to screenshot into tests/artifacts if the test fails."""
    pages = []
    yield lambda page, name: pages.append((page, name))
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for page, name in pages:
            if not page.is_closed():
                page.screenshot(path=ARTIFACTS / f"{request.node.name}-{name}.png")


def create_notebook(page, server, name, spec, count=None):
    """As rene: sign in, fill the new-notebook form (started at once); the notebook's id."""
    sign_in(page, server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{server.url}/renter/")
    page.goto(f"{server.url}/renter/notebooks/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.locator("#spec").select_option(spec)
    if count is not None:
        page.get_by_label("Subtasks", exact=True).fill(str(count))
    page.locator("#create-notebook").click()
    expect(page.locator("h1")).to_have_text(name)
    return int(page.url.rsplit("/", 1)[1])


def replica_ids(server, notebook_id):
    """{role: replica id} of the latest run of notebook ``notebook_id``."""
    rows = query(server, "SELECT s.role, r.id FROM replicas r JOIN subtasks s ON r.subtask_id"
                         " = s.id JOIN tasks t ON r.task_id = t.id WHERE t.notebook_id = "
                         f"{notebook_id} AND t.id = (SELECT max(id) FROM tasks WHERE "
                         f"notebook_id = {notebook_id})")
    return dict(rows)


def open_one(page, server, notebook_id, role="lab-0"):
    """Click Open (on the current page) once JupyterLab runs; (the lab tab, its base URL)."""
    button = page.locator(f'button[data-open="{notebook_id}"]')
    expect(button).to_be_visible(timeout=90_000)  # placed, started, has an address
    lab = open_jupyterlab(page, button)
    base = f"{server.notebook_url}/nb/{replica_ids(server, notebook_id)[role]}/"
    expect(lab).to_have_url(re.compile(re.escape(base) + "lab"), timeout=30_000)
    return lab, base


def save(lab, panel):
    """Ctrl+S; JupyterLab asks for a name on the first save of an untitled notebook."""
    panel.locator(".jp-Cell").first.click()
    lab.keyboard.press("Control+s")
    dialog = lab.locator(".jp-Dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("textbox", name="File name").fill(SAVED_AS)
    dialog.get_by_role("button", name="Rename").click()
    expect(dialog).to_be_hidden()
    # JupyterLab refreshes its file list on its own clock, slower on a busy machine.
    expect(lab.locator(".jp-DirListing-item", has_text=SAVED_AS)).to_be_visible(timeout=30_000)
    # Saved: no unsaved-changes mark on its tab.
    expect(lab.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0)


def test_a_saved_notebook_keeps_its_cell_and_output_across_stop_and_start(
        cloud, page, screenshots):
    server, _ = cloud
    screenshots(page, "portal")
    notebook_id = create_notebook(page, server, "saved lab", "lab")
    lab, base = open_one(page, server, notebook_id)
    screenshots(lab, "first-lab")
    panel = new_jupyter_notebook(lab, base)
    output = run_cell(lab, panel, "1+1").first
    expect(output).to_have_text("2", timeout=60_000)
    save(lab, panel)
    lab.close()

    (rene,) = query(server, "SELECT id FROM users WHERE name = 'rene'")[0]
    data = Path(server.env.get("HOURGLASS_DATA") or Path(server.env["HOURGLASS_INSTANCE"])
                / "data")
    folder = code_folder(data, SimpleNamespace(user_id=rene, id=notebook_id))
    saved = json.loads((folder / SAVED_AS).read_text())
    cell = saved["cells"][0]
    assert "".join(cell["source"]) == "1+1" and cell["execution_count"] == 1
    # nbformat keeps text as a string or a list of lines
    assert ["".join(out["data"]["text/plain"]) for out in cell["outputs"]] == ["2"]

    # Stop on the notebook's page (it asks first), wait for it to stop, start again.
    first_run = replica_ids(server, notebook_id)["lab-0"]
    page.goto(f"{server.url}/renter/notebooks/{notebook_id}")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.locator("#stop-notebook").click()
    expect(page.locator("#notebook-state [data-state]")).to_have_attribute(
        "data-state", "stopped", timeout=60_000)
    assert asked == ["Stop saved lab? Your files stay in /code."]
    expect(page.locator("#open-notebook")).to_have_count(0)
    page.locator("#start-notebook").click()
    expect(page.locator("#notebook-state [data-state]")).not_to_have_attribute(
        "data-state", "stopped")
    lab, base = open_one(page, server, notebook_id)
    screenshots(lab, "second-lab")
    assert replica_ids(server, notebook_id)["lab-0"] != first_run  # a new container

    item = lab.locator(".jp-DirListing-item", has_text=SAVED_AS)
    expect(item).to_be_visible(timeout=90_000)
    item.dblclick()
    panel = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(lab.locator(".lm-TabBar-tab.lm-mod-current", has_text=SAVED_AS)).to_be_visible()
    expect(panel.locator(".jp-Cell .cm-content").first).to_have_text("1+1")
    expect(panel.locator(".jp-InputPrompt").first).to_have_text("[1]:")
    expect(panel.locator(".jp-OutputArea-output").first).to_have_text("2")


def test_a_cell_sees_the_chips_of_the_spec_and_no_others(cloud, page, screenshots):
    server, chips = cloud
    screenshots(page, "portal")
    notebook_id = create_notebook(page, server, "tpu lab", "tpu2")
    lab, base = open_one(page, server, notebook_id)
    screenshots(lab, "lab")
    panel = new_jupyter_notebook(lab, base)
    code = ("import glob, os; print(sorted(glob.glob('/dev/bm-sophon*')), "
            "[os.stat(f'/dev/bm-sophon{n}').st_rdev for n in (0, 1)])")
    output = run_cell(lab, panel, code).first
    rdev = os.stat(chips[0]).st_rdev  # the fake node's device number (all chips share it)
    expect(output).to_have_text(f"['/dev/bm-sophon0', '/dev/bm-sophon1'] [{rdev}, {rdev}]",
                                timeout=60_000)
    assert len(chips) == 3  # the node had a third chip; the spec gave two


def test_two_subtasks_offer_one_open_each_into_their_own_container(cloud, page, screenshots,
                                                                  podman_service):
    server, _ = cloud
    screenshots(page, "portal")
    notebook_id = create_notebook(page, server, "pair", "lab", count=2)
    page.goto(f"{server.url}/renter/notebooks")
    buttons = page.locator(f'button[data-open="{notebook_id}"]')
    expect(buttons).to_have_count(2, timeout=120_000)  # both placed, started, addressed
    expect(buttons.nth(0)).to_have_attribute("data-role", "lab-0")
    expect(buttons.nth(1)).to_have_attribute("data-role", "lab-1")
    replicas = replica_ids(server, notebook_id)
    assert sorted(replicas) == ["lab-0", "lab-1"]

    # Open each and run a cell there: every tab is JupyterLab of its own subtask's
    # container. Then back to the first tab, whose access the second Open renewed.
    tabs, backend = {}, PodmanBackend(podman_service.url)
    code = "import os, socket; print(os.environ['HOURGLASS_ROLE'], socket.gethostname())"
    for role in ("lab-0", "lab-1"):
        page.bring_to_front()
        lab = open_jupyterlab(page, page.locator(f'button[data-open="{notebook_id}"]'
                                                 f'[data-role="{role}"]'))
        screenshots(lab, role)
        base = f"{server.notebook_url}/nb/{replicas[role]}/"
        expect(lab).to_have_url(re.compile(re.escape(base) + "lab"), timeout=30_000)
        panel = new_jupyter_notebook(lab, base)
        output = run_cell(lab, panel, code).first
        # The name its container answers to on the task's network, asked of Podman.
        found = backend.exec(server.container(replicas[role]), ["hostname"])
        assert found.exit_code == 0, found.stderr
        assert found.stdout.strip() == f"{role}-0"
        expect(output).to_have_text(f"{role} {role}-0", timeout=60_000)
        tabs[role] = (lab, panel)
    lab, panel = tabs["lab-0"]
    lab.bring_to_front()
    expect(run_cell(lab, panel, code, index=1).first).to_have_text("lab-0 lab-0-0",
                                                                   timeout=60_000)
    assert server.container(replicas["lab-0"]) != server.container(replicas["lab-1"])
