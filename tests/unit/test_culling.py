"""Idle culling of notebooks (``scheduler.culling``), its pool setting on the miner's Pools
page and in the API, and the time left on the renter's notebook page.

A small real HTTP server stands in for JupyterLab: it answers ``/nb/<rid>/api/status`` and
``/nb/<rid>/api/kernels`` with JSON the test sets, only with the run's token. The rows are
real; the replica states the scheduler would write are set directly.
"""

import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.models import Pool, PoolLimit, Replica, Task, utcnow
from portal.pools import PoolLimits, default_pool, pool_limits, set_pool_limits
from portal.reasons import CULLED
from scheduler import culling
from tests.conftest import PASSWORD, free_port
from tests.support import csrf_token, login
from tests.unit import test_notebooks as notebooks
from tests.unit.test_tasks import set_state, world  # noqa: F401 (the fixture)


class FakeLab:
    """What the fake JupyterLab answers: ``status`` and ``kernels`` (JSON), or ``broken``
    (a 500 with text); ``token`` is the one it accepts; ``seen`` (path, Authorization)."""

    def __init__(self):
        self.status, self.kernels, self.broken, self.token, self.seen = {}, [], False, "", []


@pytest.fixture
def lab():
    """A FakeLab served on 127.0.0.1; ``lab.address`` is its "IP:port"."""
    fake = FakeLab()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            auth = self.headers.get("Authorization", "")
            fake.seen.append((self.path, auth))
            path = self.path.split("?")[0]
            found = re.fullmatch(r"/nb/\d+/api/(status|kernels)", path)
            if auth != f"token {fake.token}":
                code, body = 403, b'{"message": "Forbidden"}'
            elif found is None:
                code, body = 404, b"{}"
            elif fake.broken:
                code, body = 500, b"oops"
            else:
                code = 200
                body = json.dumps(fake.status if found[1] == "status" else fake.kernels).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.address = f"127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def threads():
    executor = ThreadPoolExecutor(max_workers=4)
    yield executor
    executor.shutdown()


@pytest.fixture
def running(app, world, lab):  # noqa: F811 (the fixture)
    """A running notebook of rene's in the default pool, its JupyterLab the fake one, the
    pool culling after 5 minutes idle; (notebook, run, replica)."""
    with app.app_context():
        notebook = notebooks.make()
        run = Task.get(Task.notebook == notebook)
        set_state(run, "running", address=lab.address)
        lab.token = run.secret
        set_pool_limits(default_pool(), cull_idle_minutes="5")
        yield notebook, run, Replica.get(Replica.task == run)


def iso(moment):
    return moment.isoformat() + "Z"


def idle(lab, since, state="idle"):
    lab.status = {"started": iso(since), "last_activity": iso(since), "connections": 0,
                  "kernels": 1}
    lab.kernels = [{"id": "k1", "name": "python3", "last_activity": iso(since),
                    "execution_state": state, "connections": 0}]


def run_row(run):
    return Task.get_by_id(run.id)


def test_an_idle_notebook_is_stopped_as_culled(running, lab, threads, caplog):
    notebook, run, replica = running
    now = utcnow()
    idle(lab, now - timedelta(minutes=6))
    with caplog.at_level(logging.DEBUG):
        assert culling.cull(now, culling.fetch_with(threads)) == [run.id]
    stopped = run_row(run)
    assert stopped.stop_requested and stopped.stop_reason == CULLED
    assert Replica.get_by_id(replica.id).last_activity_at == now - timedelta(minutes=6)
    # asked with the run's token; the kernels without counting as activity
    assert {auth for _, auth in lab.seen} == {f"token {run.secret}"}
    assert sorted(path for path, _ in lab.seen) == [
        f"/nb/{replica.id}/api/kernels?no_track_activity=1", f"/nb/{replica.id}/api/status"]
    assert run.secret not in caplog.text
    # stopped once: the next pass does not ask again
    lab.seen.clear()
    assert culling.cull(now, culling.fetch_with(threads)) == [] and lab.seen == []


def test_a_busy_kernel_keeps_it_running_however_old_the_activity(running, lab, threads):
    notebook, run, replica = running
    now = utcnow()
    idle(lab, now - timedelta(hours=3), state="busy")
    assert culling.cull(now, culling.fetch_with(threads)) == []
    assert not run_row(run).stop_requested
    assert Replica.get_by_id(replica.id).last_activity_at == now  # busy is activity now


def test_recent_activity_keeps_it_running(running, lab, threads):
    notebook, run, replica = running
    now = utcnow()
    idle(lab, now - timedelta(minutes=4, seconds=59))
    assert culling.cull(now, culling.fetch_with(threads)) == []
    assert not run_row(run).stop_requested
    # the same activity, 2 seconds later, is past 5 minutes
    assert culling.cull(now + timedelta(seconds=2), culling.fetch_with(threads)) == [run.id]


def test_culling_off_keeps_it_running_and_asks_nothing(running, lab, threads):
    notebook, run, replica = running
    now = utcnow()
    idle(lab, now - timedelta(days=2))
    set_pool_limits(default_pool(), cull_idle_minutes="")
    assert PoolLimit.select().count() == 0
    assert culling.cull(now, culling.fetch_with(threads)) == []
    assert lab.seen == [] and not run_row(run).stop_requested
    # culling on in another pool does not reach this one
    set_pool_limits(Pool.get(Pool.name == "lab"),
                              cull_idle_minutes=1)
    assert culling.cull(now, culling.fetch_with(threads)) == [] and lab.seen == []


@pytest.mark.parametrize("trouble", ["unreachable", "broken", "wrong token", "no kernels"])
def test_no_answer_is_no_culling(running, lab, threads, trouble, caplog):
    notebook, run, replica = running
    now = utcnow()
    idle(lab, now - timedelta(days=2))
    if trouble == "unreachable":
        Replica.update(address=f"127.0.0.1:{free_port()}").where(Replica.id == replica.id).execute()
    elif trouble == "broken":
        lab.broken = True
    elif trouble == "wrong token":
        lab.token = "another"
    else:
        lab.kernels = {"message": "not a list"}
    with caplog.at_level(logging.DEBUG):
        assert culling.cull(now, culling.fetch_with(threads)) == []
    assert not run_row(run).stop_requested
    assert Replica.get_by_id(replica.id).last_activity_at is None
    assert run.secret not in caplog.text


def test_the_page_shows_the_time_left(app, client, running, lab):
    notebook, run, replica = running
    login(client, "renter", "rene", PASSWORD)
    url = f"/renter/notebooks/{notebook.id}"
    with app.app_context():
        Replica.update(last_activity_at=utcnow() - timedelta(minutes=2)).where(
            Replica.id == replica.id).execute()
    page = client.get(url).get_data(as_text=True)
    assert re.search(r'id="notebook-culling" data-minutes-left="3"', page), page
    assert "Stops when idle for 5 minutes: about 3 minutes left." in page
    with app.app_context():
        Replica.update(last_activity_at=utcnow() - timedelta(minutes=9)).where(
            Replica.id == replica.id).execute()
    assert "about 0 minutes left" in client.get(url).get_data(as_text=True)
    with app.app_context():
        set_pool_limits(default_pool(), cull_idle_minutes=None)
    assert "notebook-culling" not in client.get(url).get_data(as_text=True)
    with app.app_context():
        set_pool_limits(default_pool(), cull_idle_minutes=5)
        set_state(run, "stopped")
    assert "notebook-culling" not in client.get(url).get_data(as_text=True)


# --- the setting -------------------------------------------------------------------------


def save(client, pool_id, cull):
    return client.post(f"/miner/pools/{pool_id}/limits", data={
        "max_chips_per_user": "", "max_replicas_per_user": "2", "cull_idle_minutes": cull,
        "csrf_token": csrf_token(client, "/miner/pools")})


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "abc", "10081", "1e3", "９"])
def test_the_pools_page_refuses_bad_minutes(app, client, accounts, bad):
    login(client, "miner", "mina", PASSWORD)
    response = save(client, 1, bad)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter whole minutes from 1 to 10080, or leave it empty" in html
    assert 'id="pool-1-cull_idle_minutes"' in html and 'aria-invalid="true"' in html
    with app.app_context():
        assert PoolLimit.select().count() == 0  # nothing saved, the other limit neither


def test_the_pools_page_saves_and_clears_minutes(app, client, accounts):
    login(client, "miner", "mina", PASSWORD)
    assert save(client, 1, " 30 ").status_code == 303
    with app.app_context():
        assert pool_limits(default_pool()) == PoolLimits(
            None, 2, 30)
    page = client.get("/miner/pools").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="pool-1-cull_idle_minutes"[^>]*value="30"', page)
    assert save(client, 1, "10080").status_code == 303
    assert save(client, 1, "").status_code == 303
    with app.app_context():
        assert pool_limits(default_pool()).cull_idle_minutes is None


def test_the_api_shows_and_sets_minutes(app, client, accounts):
    login(client, "miner", "mina", PASSWORD)
    header = {"X-CSRFToken": csrf_token(client, "/miner/pools")}
    changed = client.patch("/api/v1/pools/1", json={"limits": {"cull_idle_minutes": 15}},
                           headers=header)
    assert changed.status_code == 200, changed.json
    assert changed.json["limits"]["cull_idle_minutes"] == 15
    refused = client.patch("/api/v1/pools/1", json={"limits": {"cull_idle_minutes": 0}},
                           headers=header)
    assert refused.status_code == 400
    assert client.get("/api/v1/pools/1").json["limits"]["cull_idle_minutes"] == 15
