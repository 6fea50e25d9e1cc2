"""A replica's log and web console, on real Podman.

The log tests drive the scheduler's pass themselves (``Reconciler.run``) and
read the pages through Flask's test client. The console tests need a real
WebSocket, so they run against a live ``flask --app app serve`` (gunicorn
gthread) whose own scheduler starts the task.
"""

import json
import time
from types import SimpleNamespace

import pytest
import requests
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as Refused

from portal.models import Replica, Task, User
from portal.specs import parse_spec, save_spec
from portal.tasks import create_task, request_stop
from portal.users import create_user
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD, TEST_IMAGE
from tests.support import CSRF_RE, fund, fund_on, login, wait_for

pytestmark = pytest.mark.podman

# Prints a line with markup, waits for /dev/shm/go to exist, prints another, then sleeps.
GATED = ["sh", "-c", 'echo "first <b>line</b>"; while [ ! -e /dev/shm/go ]; do sleep 0.1; done; '
         "echo second-line; exec sleep 600"]


@pytest.fixture
def cloud(instance, podman_service, test_image, tmp_path, monkeypatch):
    """An app on the test Podman service with a CPU-only spec "small" and renters rene and
    carol; the scheduler's pass is the test's to run. No app context stays pushed: the
    test client's requests would share its ``g``, and so its signed-in user."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    host.mkdir()
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    monkeypatch.setenv("HOURGLASS_HOST_ROOT", str(host))
    app = create_app({"TESTING": True})
    app.extensions["hourglass.containers"].idle = 0.5
    with app.app_context():
        db.upgrade()
        Discovery(podman_service.url, host_root=host).run()
        save_spec(None, parse_spec("small", "0.1", "0.125", "1", {}))
        fund(create_user("rene", "renter", PASSWORD), create_user("carol", "renter", PASSWORD))
    yield SimpleNamespace(app=app, reconciler=Reconciler(podman_service.url, host_root=host,
                                                         grace=1),
                          backend=PodmanBackend(podman_service.url))
    with app.app_context():
        for replica in Replica.select().where(Replica.container != ""):
            PodmanBackend(podman_service.url).remove(replica.container)
    db.database.close()


def submit(cloud, name, argv):
    """rene's task of one "small" replica running ``argv``."""
    with cloud.app.app_context():
        return create_task(User.get(User.name == "rene"), name, TEST_IMAGE, argv, {}, "default",
                           [("main", "small", 1)])


def run_until(cloud, task, states):
    """Run the scheduler's pass until ``task`` is in one of ``states``; its replica."""
    def reached():
        cloud.reconciler.run()
        return Task.get_by_id(task.id).state in states
    with cloud.app.app_context():
        wait_for(reached, timeout=30, interval=0.2, what=f"task {task.id} to be {states}")
        return Replica.get(Replica.task == task)


def stop(cloud, task):
    with cloud.app.app_context():
        request_stop(Task.get_by_id(task.id))
    return run_until(cloud, task, ("stopped",))


def signed_in(app, name):
    client = app.test_client()
    assert login(client, "renter", name, PASSWORD).status_code == 302
    return client


def test_log_page_follows_a_running_replica_and_downloads_after_the_end(cloud):
    task = submit(cloud, "gated", GATED)
    replica = run_until(cloud, task, ("running",))
    client = signed_in(cloud.app, "rene")
    page_url = f"/renter/tasks/{task.id}/replicas/{replica.id}/logs"

    def page_with_first_line():
        page = client.get(page_url).get_data(as_text=True)
        return "first &lt;b&gt;line&lt;/b&gt;" in page and page
    page = wait_for(page_with_first_line, what="the first line on the log page")
    assert "<b>line" not in page and 'data-from="1"' in page and "second-line" not in page
    task_page = client.get(f"/renter/tasks/{task.id}").get_data(as_text=True)
    assert page_url in task_page and f"replicas/{replica.id}/console" in task_page

    stream = client.get(f"{page_url}/stream?from=1", buffered=False)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    events = iter(stream.response)
    assert next(events).startswith(b"retry:")
    assert cloud.backend.exec(replica.container, ["sh", "-c", "echo > /dev/shm/go"]).exit_code == 0
    deadline = time.monotonic() + 15
    while b"second-line" not in (event := next(events)):
        assert time.monotonic() < deadline, "no new line in the stream"
    assert event == b'id: 2\ndata: ["second-line"]\n\n'  # the first line was skipped
    stream.close()

    stop(cloud, task)
    page = client.get(page_url).get_data(as_text=True)
    assert "data-stream" not in page and "second-line" in page and "download=1" in page
    download = client.get(f"{page_url}?download=1")
    assert download.status_code == 200 and download.mimetype == "text/plain"
    assert download.headers["Content-Disposition"] == \
        f'attachment; filename="task-{task.id}-main-0.log"'
    assert download.get_data(as_text=True) == "first <b>line</b>\nsecond-line\n"
    ended = client.get(f"{page_url}/stream", headers={"Last-Event-ID": "1"})
    assert ended.get_data(as_text=True).endswith(
        'id: 2\ndata: ["second-line"]\n\nevent: end\ndata: {}\n\n')


def test_the_log_is_followed_from_before_the_first_line(cloud):
    """Opened before the replica printed anything, the page follows from line 0: the stream
    answers at once and brings the first line when it comes."""
    task = submit(cloud, "quiet", ["sh", "-c", "while [ ! -e /dev/shm/go ]; do sleep 0.1; "
                                   "done; echo first-line; exec sleep 600"])
    replica = run_until(cloud, task, ("running",))
    client = signed_in(cloud.app, "rene")
    page_url = f"/renter/tasks/{task.id}/replicas/{replica.id}/logs"
    page = client.get(page_url).get_data(as_text=True)
    assert 'data-from="0"' in page and "data-stream=" in page

    began = time.monotonic()
    stream = client.get(f"{page_url}/stream?from=0", buffered=False)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    assert time.monotonic() - began < 3  # it answers before there is anything to say
    events = iter(stream.response)
    assert next(events).startswith(b"retry:")
    time.sleep(1)  # quiet for longer than the log reader's idle time (0.5 s here)
    assert cloud.backend.exec(replica.container, ["sh", "-c", "echo > /dev/shm/go"]).exit_code == 0
    deadline = time.monotonic() + 15
    while b"first-line" not in (event := next(events)):
        assert time.monotonic() < deadline, "no first line in the stream"
    assert event == b'id: 1\ndata: ["first-line"]\n\n'
    stream.close()


def test_another_renter_sees_nothing_and_no_session_is_sent_to_sign_in(cloud):
    task = submit(cloud, "mine", ["sleep", "600"])
    replica = run_until(cloud, task, ("running",))
    base = f"/renter/tasks/{task.id}/replicas/{replica.id}"
    carol = signed_in(cloud.app, "carol")
    for path in ("/logs", "/logs?download=1", "/logs/stream", "/console"):
        assert carol.get(base + path).status_code == 404, path
    rene = signed_in(cloud.app, "rene")
    assert rene.get(f"/renter/tasks/{task.id}/replicas/{replica.id + 1}/logs").status_code == 404
    assert rene.get(f"{base}/console").status_code == 200
    anonymous = cloud.app.test_client().get(f"{base}/logs")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


# --- the console, through a live server --------------------------------------------------


class Socket(Client):
    """simple-websocket's client leaves the port out of ``Host``; browsers send it, and the
    console compares ``Origin`` with it."""

    def handshake(self):
        self.host = f"{self.host}:{self.port}"
        super().handshake()


class Browser:
    """A signed-in renter as a browser would be: a cookie jar, and WebSockets carrying it."""

    def __init__(self, server, name):
        self.url = server.url
        self.http = requests.Session()
        page = self.http.get(f"{self.url}/login", timeout=5).text
        answer = self.http.post(f"{self.url}/login", timeout=5, allow_redirects=False, data={
            "name": name, "password": PASSWORD, "csrf_token": CSRF_RE.search(page).group(1)})
        assert answer.status_code == 302, answer.text

    def console(self, path, origin=None, cookie=True):
        headers = {"Origin": origin or self.url}
        if cookie:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        return Socket(self.url.replace("http://", "ws://") + path, headers=headers)

    def sign_out(self):
        page = self.http.get(f"{self.url}/renter/", timeout=5).text
        token = CSRF_RE.search(page).group(1)
        assert self.http.post(f"{self.url}/logout", data={"csrf_token": token}, timeout=5,
                              allow_redirects=False).status_code == 302


def api(server, token, method, path, body=None):
    answer = requests.request(method, f"{server.url}/api/v1{path}", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def serve_a_running_task(make_server, image, tmp_path, argv=GATED):
    """A live server (from ``live_server_factory``) with its scheduler on, running rene's task
    "shell" of one replica; mina is a miner, carol another renter. Also used by the browser
    tests."""
    host = tmp_path / "host"
    host.mkdir()
    server = make_server(accounts=True, HOURGLASS_TICK_SECONDS="0.2",
                         HOURGLASS_DISCOVERY_SECONDS="1", HOURGLASS_HOST_ROOT=str(host))
    server.flask("user", "add", "carol", "--role", "renter", "--password-stdin", stdin=PASSWORD)
    fund_on(server, "carol")
    miner = server.flask("token", "create", "mina").stdout.strip()
    renter = server.flask("token", "create", "rene").stdout.strip()
    server.start()
    wait_for(lambda: any(n["ready"] for n in api(server, miner, "GET", "/nodes")), timeout=30,
             what="the local node to be Ready")
    api(server, miner, "POST", "/specs",
        {"name": "small", "cpu": "0.1", "memory_gb": "0.125", "price": "1"})
    task = api(server, renter, "POST", "/tasks", {
        "name": "shell", "image": image, "argv": argv, "pool": "default",
        "subtasks": [{"role": "main", "spec": "small", "replicas": 1}]})

    def running():
        replica = api(server, renter, "GET", f"/tasks/{task['id']}")["replicas"][0]
        return replica["state"] == "running" and replica
    replica = wait_for(running, timeout=30, interval=0.2, what="the replica to run")
    return SimpleNamespace(server=server, renter=renter, task=task["id"], replica=replica["id"],
                           container=server.container(replica["id"]),
                           path=f"/renter/tasks/{task['id']}/replicas/{replica['id']}/console/ws")


@pytest.fixture
def live(live_server_factory, podman_service, test_image, tmp_path):
    served = serve_a_running_task(live_server_factory, test_image, tmp_path)
    served.backend = PodmanBackend(podman_service.url)
    yield served
    served.backend.remove(served.container)


def read_until(ws, text, timeout=10):
    """What the console printed, up to and including ``text``."""
    seen, deadline = b"", time.monotonic() + timeout
    while text.encode() not in seen:
        assert time.monotonic() < deadline, f"no {text!r} in {seen!r}"
        data = ws.receive(timeout=0.5)
        seen += data if isinstance(data, bytes) else b""
    return seen.decode(errors="replace")


def closed_reason(ws, timeout=10):
    """Wait for the server to close ``ws``; its reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            ws.receive(timeout=0.5)
    return ws.close_message


def processes(backend, container):
    return backend.exec(container, ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout


def test_console_runs_a_shell_resizes_and_hangs_it_up_when_closed(live):
    rene = Browser(live.server, "rene")
    ws = rene.console(live.path + "?rows=30&cols=100")
    ws.send(b"echo hello-$((6*7)); stty size\n")
    assert "hello-42\r\n30 100" in read_until(ws, "30 100")
    ws.send(json.dumps({"resize": [40, 120]}))
    ws.send(b"stty size; sleep 4321\n")
    read_until(ws, "40 120")
    assert "sleep 4321" in processes(live.backend, live.container)
    ws.close()
    wait_for(lambda: "sleep 4321" not in processes(live.backend, live.container), timeout=10,
             what="the console's shell and its job to be hung up")


def test_console_refuses_other_origins_renters_and_visitors(live):
    rene, carol = Browser(live.server, "rene"), Browser(live.server, "carol")
    refusals = {
        "another origin": (lambda: rene.console(live.path, origin="http://evil.example"), 403),
        "no session": (lambda: rene.console(live.path, cookie=False), 401),
        "another renter": (lambda: carol.console(live.path), 404),
    }
    for what, (connect, status) in refusals.items():
        with pytest.raises(Refused) as refused:
            connect()
        assert refused.value.status_code == status, what
    base = live.path.removesuffix("/console/ws")
    for path in ("/logs", "/logs?download=1", "/logs/stream", "/console"):
        answer = carol.http.get(live.server.url + base + path, timeout=5)
        assert answer.status_code == 404, path


def test_signing_out_or_stopping_the_replica_closes_the_console(live):
    rene = Browser(live.server, "rene")
    ws = rene.console(live.path)
    ws.send(b"echo up-$((1+1))\n")
    read_until(ws, "up-2")
    started = time.monotonic()
    rene.sign_out()
    assert closed_reason(ws) == "You signed out."
    assert time.monotonic() - started < 5
    with pytest.raises(Refused):  # the jar's cookie holds no user now
        rene.console(live.path)

    again = Browser(live.server, "rene")
    ws = again.console(live.path)
    read_until(ws, "# ")
    api(live.server, live.renter, "POST", f"/tasks/{live.task}/stop")
    assert closed_reason(ws, timeout=20) in ("The shell ended.", "The replica is not running.")
