"""What the browser tests do again and again: sign in and out, find the menu and headings,
open a notebook's JupyterLab and run a cell in it.

These helpers act; the tests assert with Playwright's auto-waiting ``expect``. The
JupyterLab helpers wait (bounded) for JupyterLab to be ready before they act.
"""

import sqlite3
from contextlib import closing
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.integration.test_replica_io import api
from tests.support import LOGIN_PATH, wait_for

RENTER_MENU = ["Overview", "Notebooks", "Training tasks", "Machine-time", "Algorithms",
               "Datasets", "Images", "Templates"]
MINER_MENU = ["Overview", "Nodes", "Resources", "Specs", "Pools", "Users", "Machine-time",
              "Images", "Monitoring"]
NOT_BUILT = "This page is not built yet."
WRONG_PASSWORD = "Wrong user name or password, or the account is disabled."


def sign_in(page: Page, url, role, name, password, *, user_label="User name",
            password_label="Password", button="Sign in"):
    """Open the login page of ``role`` on ``url``, type name and password, press the button."""
    page.goto(url + LOGIN_PATH[role])
    page.get_by_label(user_label, exact=True).fill(name)
    page.get_by_label(password_label, exact=True).fill(password)
    page.get_by_role("button", name=button, exact=True).click()


def sign_out(page: Page):
    page.locator("#logout").click()


def menu_links(page: Page):
    """The links of the main menu (the ``nav.menu`` under the top bar)."""
    return page.locator("nav.menu a")


def heading(page: Page):
    return page.get_by_role("heading", level=1)


# --- notebooks ---------------------------------------------------------------------------


def query(server, sql):
    """Rows of ``sql`` on the live server's SQLite database (read-only use)."""
    with closing(sqlite3.connect(Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db")) as db:
        return db.execute(sql).fetchall()


def open_jupyterlab(page: Page, button):
    """Click an Open ``button`` (it opens a new tab); the new tab."""
    with page.context.expect_page() as opened:
        button.click()
    lab = opened.value
    lab.set_default_timeout(20_000)
    return lab


# Whether the new notebook's kernel settled: JupyterLab may start a second kernel for a new
# notebook and shut the first one down; a cell run meanwhile goes nowhere.
ONE_IDLE_KERNEL = """async (base) => {
  const kernels = await (await fetch(base + "api/kernels")).json();
  const sessions = await (await fetch(base + "api/sessions")).json();
  return kernels.length === 1 && kernels[0].execution_state === "idle"
    && sessions.length === 1 && sessions[0].kernel.id === kernels[0].id;
}"""


def new_jupyter_notebook(lab: Page, base):
    """In JupyterLab (``base``: its URL ending in ``/``), a new notebook from the launcher,
    once its kernel is idle and connected; the notebook's panel."""
    launcher = lab.locator('.jp-LauncherCard[data-category="Notebook"]').first
    expect(launcher).to_be_visible(timeout=90_000)  # 502 pages reload until it answers
    launcher.click()
    panel = lab.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    lab.wait_for_function(ONE_IDLE_KERNEL, arg=base, polling=500, timeout=60_000)
    # Connected to it over the proxy's WebSocket: a cell run before that is dropped.
    expect(lab.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=30_000)
    return panel


def run_cell(lab: Page, panel, code, index=0):
    """Type ``code`` (one line) into cell ``index`` of ``panel`` and run it (Shift+Enter);
    the locator of that cell's outputs."""
    cell = panel.locator(".jp-Cell").nth(index)
    editor = cell.locator(".cm-content")
    editor.click()
    editor.fill(code)
    expect(editor).to_have_text(code)
    editor.click()
    lab.keyboard.press("Shift+Enter")
    return cell.locator(".jp-OutputArea-output")


def scheduling_server(live_server_factory, host_root, price="1", **env):
    """A live server with its scheduler on (fast ticks, chips read under ``host_root``, more
    settings in ``env``), started, its local node Ready and a spec "small" (0.1 CPU,
    0.125 GB, ``price`` per hour); (the server, the miner mina's API token)."""
    server = live_server_factory(accounts=True, HOURGLASS_TICK_SECONDS="0.2",
                                 HOURGLASS_DISCOVERY_SECONDS="1",
                                 HOURGLASS_HOST_ROOT=str(host_root), **env)
    miner = server.flask("token", "create", "mina").stdout.strip()
    server.start()
    wait_for(lambda: any(n["ready"] for n in api(server, miner, "GET", "/nodes")), timeout=30,
             what="the local node to be Ready")
    api(server, miner, "POST", "/specs",
        {"name": "small", "cpu": "0.1", "memory_gb": "0.125", "price": price})
    return server, miner
