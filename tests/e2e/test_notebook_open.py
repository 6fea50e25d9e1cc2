"""Open: from the notebook list to JupyterLab in Chromium, through the notebook proxy.

A live server (real gunicorn binding the portal's port and the notebook origin's port)
whose scheduler runs a notebook of the real JupyterLab image on real Podman. The renter
creates and starts it on its pages, clicks Open and lands in JupyterLab on the other
origin; a cell ``1+1`` prints ``2`` in JupyterLab's own UI, and again through the
Jupyter REST API and a kernel WebSocket from the page. Signing out of the portal in
another tab ends access: the next fetch is refused and the open WebSocket closes.
The Jupyter token shows up nowhere: no page, URL, request the browser made, nor the
server's log; the notebook origin's scripts cannot read the portal's session cookie;
another renter cannot open the notebook.
"""

import re

import pytest
import requests
from playwright.sync_api import expect
from simple_websocket import ConnectionError as Refused

from scheduler.podman import PodmanBackend
from tests.conftest import ARTIFACTS, PASSWORD
from tests.e2e.helpers import (
    new_jupyter_notebook,
    open_jupyterlab,
    query,
    run_cell,
    sign_in,
    sign_out,
)
from tests.integration.test_replica_io import Socket, api
from tests.support import CSRF_RE, fund_on, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.podman]

# In the notebook tab: start a kernel through the proxy, run 1+1 over its WebSocket (the
# legacy JSON protocol: no subprotocol asked), and keep a second WebSocket open to watch.
RUN_ONE_PLUS_ONE = """async (base) => {
  const started = await fetch(base + "api/kernels", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: "{}"});
  if (!started.ok) return "kernel start: " + started.status;
  const kernel = await started.json();
  const url = base.replace(/^http/, "ws") + "api/kernels/" + kernel.id + "/channels";
  const watch = new WebSocket(url);
  window.watchClosed = null;
  watch.onclose = (event) => { window.watchClosed = event.code; };
  const ws = new WebSocket(url);
  const id = "hg-" + Math.random().toString(16).slice(2);
  return await new Promise((resolve) => {
    setTimeout(() => resolve("no result in time"), 60000);
    ws.onerror = () => resolve("websocket error");
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.msg_type === "execute_result" && msg.parent_header.msg_id === id)
        resolve(msg.content.data["text/plain"]);
      if (msg.msg_type === "error") resolve("error: " + msg.content.ename);
    };
    ws.onopen = () => ws.send(JSON.stringify({
      header: {msg_id: id, username: "hg", session: id, msg_type: "execute_request",
               version: "5.3", date: new Date().toISOString()},
      parent_header: {}, metadata: {}, buffers: [], channel: "shell",
      content: {code: "1+1", silent: false, store_history: false, user_expressions: {},
                allow_stdin: false, stop_on_error: true}}));
  });
}"""


@pytest.fixture
def cloud(live_server_factory, podman_service, jupyter_image, tmp_path):
    """A live server with its scheduler on (a CPU-only spec "lab": 1 CPU, 1 GB), renters
    rene and carol; the notebooks' containers are removed at the end."""
    host = tmp_path / "host"
    host.mkdir()
    server = live_server_factory(accounts=True, HOURGLASS_TICK_SECONDS="0.2",
                                 HOURGLASS_DISCOVERY_SECONDS="1", HOURGLASS_HOST_ROOT=str(host))
    server.flask("user", "add", "carol", "--role", "renter", "--password-stdin", stdin=PASSWORD)
    fund_on(server, "carol")
    miner = server.flask("token", "create", "mina").stdout.strip()
    server.start()
    wait_for(lambda: any(n["ready"] for n in api(server, miner, "GET", "/nodes")), timeout=30,
             what="the local node to be Ready")
    api(server, miner, "POST", "/specs",
        {"name": "lab", "cpu": "1", "memory_gb": "1", "price": "1"})
    yield server
    backend = PodmanBackend(podman_service.url)
    for (container,) in query(server, "SELECT container FROM replicas WHERE container != ''"):
        backend.remove(container)


def signed_in_session(server, name):
    """``name`` signed in with requests: (session, a CSRF token of their pages)."""
    http = requests.Session()
    page = http.get(f"{server.url}/login", timeout=5).text
    answer = http.post(f"{server.url}/login", timeout=5, allow_redirects=False, data={
        "name": name, "password": PASSWORD, "csrf_token": CSRF_RE.search(page).group(1)})
    assert answer.status_code == 302, answer.text
    return http, CSRF_RE.search(http.get(f"{server.url}/renter/notebooks", timeout=5).text
                                ).group(1)


def run_a_cell_in_jupyterlab(lab, base):
    """JupyterLab's own UI: a new notebook from the launcher, ``1+1`` in its cell, ``2``."""
    panel = new_jupyter_notebook(lab, base)
    output = run_cell(lab, panel, "1+1").first
    expect(output).to_have_attribute("data-mime-type", "text/plain")
    expect(output).to_have_text("2", timeout=60_000)
    expect(panel.locator(".jp-InputPrompt").first).to_have_text("[1]:")


def test_open_lands_in_jupyterlab_on_its_own_origin_until_signing_out(cloud, page):
    server = cloud
    seen = []  # every request the browser made: (url, body)
    page.context.on("request", lambda request: seen.append((request.url, request.post_data)))
    sign_in(page, server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{server.url}/renter/")
    page.goto(f"{server.url}/renter/notebooks/new")
    page.get_by_label("Name", exact=True).fill("my lab")
    page.locator("#spec").select_option("lab")
    page.locator("#create-notebook").click()
    expect(page.locator("h1")).to_have_text("my lab")
    notebook_id = int(page.url.rsplit("/", 1)[1])

    page.goto(f"{server.url}/renter/notebooks")
    open_button = page.locator(f'button[data-open="{notebook_id}"]')
    expect(open_button).to_be_visible(timeout=90_000)  # placed, started, has an address
    lab = open_jupyterlab(page, open_button)
    (replica_id,) = query(server, "SELECT r.id FROM replicas r JOIN tasks t ON r.task_id = t.id"
                                  f" WHERE t.notebook_id = {notebook_id}")[0]
    base = f"{server.notebook_url}/nb/{replica_id}/"
    expect(lab).to_have_url(re.compile(re.escape(base) + "lab"), timeout=30_000)
    try:
        run_a_cell_in_jupyterlab(lab, base)
    except AssertionError:
        ARTIFACTS.mkdir(exist_ok=True)
        lab.screenshot(path=ARTIFACTS / "test_notebook_open-jupyterlab.png")
        raise
    # The same through the Jupyter REST API and a kernel WebSocket, from the page.
    assert lab.evaluate(RUN_ONE_PLUS_ONE, base) == "2"

    secret = query(server, f"SELECT secret FROM tasks WHERE notebook_id = {notebook_id}")[0][0]
    assert len(secret) >= 32
    assert secret not in lab.content() and secret not in lab.url
    portal_cookie = next(c for c in page.context.cookies(server.url) if c["name"] == "session")
    visible = lab.evaluate("document.cookie")
    assert portal_cookie["value"] not in visible and "hourglass_notebook" not in visible
    grants = [body for url, body in seen if url.endswith("/_hourglass/enter")]
    assert len(grants) == 1 and grants[0].startswith("grant=")
    grant = grants[0].removeprefix("grant=")
    for url, body in seen:
        assert secret not in url and secret not in (body or "") and grant not in url

    # Another renter: neither the page nor Open.
    carol, token = signed_in_session(server, "carol")
    assert carol.get(f"{server.url}/renter/notebooks/{notebook_id}", timeout=5
                     ).status_code == 404
    assert carol.post(f"{server.url}/renter/notebooks/{notebook_id}/open", timeout=5,
                      data={"csrf_token": token}).status_code == 404
    assert carol.get(base + "api/status", timeout=5, allow_redirects=False).status_code == 303

    # WebSockets: only with the access cookie, and only from the notebook origin.
    access = next(c["value"] for c in page.context.cookies(server.notebook_url)
                  if c["name"] == "hourglass_notebook")
    events = base.replace("http://", "ws://") + "api/events/subscribe"
    cookie = {"Cookie": f"hourglass_notebook={access}"}
    for headers, status in (({"Origin": server.notebook_url}, 401),
                            ({"Origin": server.url, **cookie}, 403),
                            ({"Origin": "http://evil.example", **cookie}, 403)):
        with pytest.raises(Refused) as refused:
            Socket(events, headers=headers)
        assert refused.value.status_code == status, headers
    socket = Socket(events, headers={"Origin": server.notebook_url, **cookie})
    socket.close()

    # Signing out of the portal (in the portal's tab) ends the notebook tab's access.
    assert lab.evaluate("window.watchClosed") is None
    page.bring_to_front()
    sign_out(page)
    expect(page).to_have_url(re.compile(r"/login"))
    assert lab.evaluate(f"fetch('{base}api/status').then(r => r.status)") == 401
    lab.wait_for_function("window.watchClosed !== null", timeout=10_000)
    assert lab.evaluate("window.watchClosed") == 1008
    lab.goto(base + "lab")
    expect(lab).to_have_url(re.compile(re.escape(server.url) + r"/login\?next="))

    log = server.log()
    assert secret not in log and grant not in log
