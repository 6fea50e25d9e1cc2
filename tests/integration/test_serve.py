"""``flask --app app serve`` (what ``make run`` starts): real gunicorn, real Podman,
the scheduler's leader lease across processes sharing one database."""

import re
import signal
import sqlite3
from pathlib import Path

import pytest
import requests

from portal.config import local_podman_socket
from tests.support import wait_for

pytestmark = pytest.mark.podman

FAST = {"HOURGLASS_LEASE_SECONDS": "1.5", "HOURGLASS_TICK_SECONDS": "0.2"}


def scheduler_state(server):
    return server.health()["scheduler"]["state"]


def test_serve_is_healthy_and_leads(live_server):
    response = requests.get(f"{live_server.url}/healthz", timeout=5)
    body = response.json()
    assert response.status_code == 200, body
    assert body["scheduler"]["state"] == "leader" and body["scheduler"]["enabled"] is True
    assert body["podman"]["ok"] and body["database"]["ok"]
    page = requests.get(f"{live_server.url}/login", timeout=5)
    assert page.status_code == 200 and "csrf_token" in page.text


def test_leader_records_its_ticks(live_server_factory, tmp_path):
    server = live_server_factory(**FAST)
    server.flask("db", "upgrade")
    server.start()
    db = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"

    def last_tick():
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT last_tick_at FROM leader_lease").fetchone()
        return row and row[0]

    first = wait_for(last_tick, what="a first tick")
    wait_for(lambda: last_tick() != first, what="a later tick")


def test_two_processes_one_leader_and_the_follower_takes_over(live_server_factory):
    first = live_server_factory(**FAST)
    first.flask("db", "upgrade")
    first.start()
    second = live_server_factory(**FAST).start()
    servers = [first, second]
    states = wait_for(lambda: sorted(scheduler_state(s) for s in servers) == ["follower", "leader"]
                      and [scheduler_state(s) for s in servers], what="one leader, one follower")
    leader, follower = (first, second) if states[0] == "leader" else (second, first)
    # The leader dies without releasing its lease: the follower waits out the lease.
    leader.kill(signal.SIGKILL)
    wait_for(lambda: scheduler_state(follower) == "leader", timeout=10,
             what="the follower to take over")
    # Only one leader at every moment after: a new process becomes a follower.
    third = live_server_factory(**FAST).start()
    assert scheduler_state(third) == "follower"
    assert scheduler_state(follower) == "leader"


def test_a_clean_stop_hands_the_lease_over_at_once(live_server_factory):
    slow = {"HOURGLASS_LEASE_SECONDS": "30", "HOURGLASS_TICK_SECONDS": "0.2"}
    first = live_server_factory(**slow)
    first.flask("db", "upgrade")
    first.start()
    second = live_server_factory(**slow).start()
    leader, follower = (first, second) if scheduler_state(first) == "leader" else (second, first)
    assert scheduler_state(follower) == "follower"
    leader.stop()  # Ctrl-C: releases the lease instead of letting it run 30 s
    wait_for(lambda: scheduler_state(follower) == "leader", timeout=15,
             what="the follower to take the released lease")


def test_serve_on_a_fresh_instance_sets_everything_up(live_server_factory, tmp_path):
    """No Podman URL, no database, no miner: serve starts its own Podman service,
    migrates, prints the first miner's password once, and stops its service on Ctrl-C."""
    instance = tmp_path / "a-rather-long-folder-name-as-labs-have" / "instance"
    instance.mkdir(parents=True)
    sock = local_podman_socket(instance)
    server = live_server_factory(instance=instance, HOURGLASS_PODMAN_URL=None).start()
    health = server.health()
    assert health["podman"]["ok"], health
    assert sock.exists()
    assert oct((instance / "secret_key").stat().st_mode & 0o777) == "0o600"
    match = re.search(r"first miner account 'admin'\. Its password, shown this once: (\S+)",
                      server.log())
    assert match, server.log()
    password = match.group(1)
    assert server.log().count(password) == 1

    session = requests.Session()
    page = session.get(f"{server.url}/miner/login", timeout=5).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(f"{server.url}/miner/login", allow_redirects=False, timeout=5,
                            data={"name": "admin", "password": password, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/miner/"

    server.stop()
    wait_for(lambda: not sock.exists() or not _socket_answers(sock),
             what="the Podman service to stop with the server")

    again = live_server_factory(instance=instance, HOURGLASS_PODMAN_URL=None).start()
    assert "first miner" not in again.log()  # created once, never again
    assert again.health()["podman"]["ok"]


def podman_services(sock):
    """The pids of ``podman system service`` processes serving ``sock``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if argv[1:3] == [b"system", b"service"] and f"unix://{sock}".encode() in argv:
            found.append(int(cmdline.parent.name))
    return found


def test_a_killed_server_leaves_no_second_podman_service(live_server_factory, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    sock = local_podman_socket(instance)
    first = live_server_factory(instance=instance, HOURGLASS_PODMAN_URL=None).start()
    (service,) = podman_services(sock)
    first.kill()  # SIGKILL: no clean-up; the service has a session of its own and lives on
    assert podman_services(sock) == [service]
    second = live_server_factory(instance=instance, HOURGLASS_PODMAN_URL=None).start()
    assert second.health()["podman"]["ok"]
    assert podman_services(sock) == [service]  # found and reused, never two
    assert "reusing the Podman service" in second.log()
    second.stop()
    wait_for(lambda: podman_services(sock) == [], what="the reused service stopped with it")


def _socket_answers(path):
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def test_weak_secret_key_is_refused(live_server_factory):
    server = live_server_factory(SECRET_KEY="changeme")
    with pytest.raises(AssertionError, match="SECRET_KEY is too weak"):
        server.start()
