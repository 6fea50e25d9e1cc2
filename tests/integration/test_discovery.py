"""Node discovery against real Podman API services, fake chip trees with real device nodes,
and real probe containers; the scheduler's discovery job on a real SQLite database."""

import json
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from portal.models import Node, NodeChip, utcnow
from portal.signals import nodes_changed
from scheduler.accelerators import discover_all
from scheduler.discovery import Discovery, host_address, podman_supported
from scheduler.podman import PROBE_LABEL
from tests.fake_hosts import make_sophgo_host, write_cdi_json
from tests.support import wait_for

pytestmark = pytest.mark.podman

PERIOD = 1.0  # DISCOVERY_SECONDS for the tests of the scheduler's job


@pytest.fixture(autouse=True)
def no_connections(tmp_path, monkeypatch):
    """An empty containers.conf of our own, so the caller's connections stay out of these tests."""
    conf = tmp_path / "connections.conf"
    conf.write_text("")
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    return conf


@pytest.fixture
def make_app(instance, podman_service, test_image):
    """An app on a fresh database whose local node is the session's Podman service."""
    from app import create_app
    from portal import db

    def make(**config):
        settings = {"TESTING": True, "PODMAN_URL": podman_service.url,
                    "PROBE_IMAGE": test_image, **config}
        app = create_app(settings)
        with app.app_context():
            db.upgrade()
        return app

    make.local_url = podman_service.url
    yield make
    db.database.close()


def chips_of(name, present=True):
    """The node's chips that the last discovery found (``present``), or those it did not."""
    node = Node.get(Node.name == name)
    return [(c.kind, c.index, c.device, c.card) for c in
            node.chips.where(NodeChip.present == present).order_by(NodeChip.kind, NodeChip.index)]


def probe_leftovers():
    return subprocess.run(["podman", "ps", "-aq", "--filter", f"label={PROBE_LABEL}"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_the_local_node_on_two_fake_hosts(make_app, tmp_path, test_image):
    """2 SC7 cards x 3 BM1684X, then the same node on a host with one BM1684 card."""
    sc7, bm1684 = tmp_path / "sc7", tmp_path / "bm1684"
    make_sophgo_host(sc7, cards=[("0x1686", 3)] * 2)
    make_sophgo_host(bm1684, cards=[("0x1684", 3)])
    app = make_app(HOST_ROOT=str(sc7))
    service = app.extensions["hourglass.scheduler"]

    service.discover_now()
    local = Node.get(Node.source == "local")
    assert (local.name, local.ready, local.reason) == ("local", True, "")
    assert local.url == app.config["PODMAN_URL"] and local.address == host_address()
    assert local.hostname and local.kernel and local.os_name
    assert podman_supported(local.podman_version)
    assert local.cpu_millis >= 1000 and local.memory_mib > 0
    assert test_image in json.loads(local.images)  # what renters may pick from
    assert chips_of("local") == [("sophgo.com/bm1684x", n, f"{sc7}/dev/bm-sophon{n}", n // 3)
                                 for n in range(6)]

    service.discovery.host_root = bm1684
    service.discover_now()
    assert chips_of("local") == [("sophgo.com/bm1684", n, f"{bm1684}/dev/bm-sophon{n}", 0)
                                 for n in range(3)]
    # The first host's chips are absent now, never deleted (a replica may hold one).
    assert [c[:2] for c in chips_of("local", present=False)] == [
        ("sophgo.com/bm1684x", n) for n in range(6)]
    again = Node.get_by_id(local.id)
    assert again.ready_changed_at == local.ready_changed_at  # Ready all along
    assert again.last_seen_at > local.last_seen_at


def test_a_node_that_stops_answering_turns_notready_and_comes_back(
        make_app, own_podman_service):
    """Two real services as two nodes under the running scheduler; one stops and restarts."""
    app = make_app(DISCOVERY_SECONDS=PERIOD, LEADER_LEASE_SECONDS=3)
    second = Node.create(name="second", url=own_podman_service.url, source="manual",
                         labels='{"zone": "b"}')
    service = app.extensions["hourglass.scheduler"]
    service.start()
    try:
        wait_for(lambda: Node.select().where(Node.ready).count() == 2, timeout=10,
                 what="both nodes Ready")
        ready_since = Node.get_by_id(second.id).ready_changed_at

        own_podman_service.stop()
        stopped = time.monotonic()
        wait_for(lambda: not Node.get_by_id(second.id).ready, timeout=10, what="NotReady")
        elapsed = time.monotonic() - stopped
        node = Node.get_by_id(second.id)
        assert node.reason.startswith("Podman API not answering: "), node.reason
        assert node.ready_changed_at > ready_since and node.labels == '{"zone": "b"}'
        # Within one period (plus the run that may have been under way when it stopped).
        assert elapsed < PERIOD + 2, elapsed
        assert Node.get(Node.source == "local").ready

        own_podman_service.start()
        wait_for(lambda: Node.get_by_id(second.id).ready, timeout=10, what="Ready again")
        assert Node.get_by_id(second.id).reason == ""
    finally:
        service.shutdown()
    assert probe_leftovers() == []


def test_a_hanging_node_does_not_hold_the_others_back(make_app, tmp_path):
    """A socket that accepts but never answers: its node waits out the timeout, alone."""
    make_app()
    folder = tempfile.mkdtemp(prefix="hg-hang-")  # podman-py wants a short socket path
    hanging = socket.socket(socket.AF_UNIX)
    hanging.bind(f"{folder}/hang.sock")
    hanging.listen(8)
    try:
        node = Node.create(name="hangs", url=f"unix://{folder}/hang.sock", source="manual")
        discovery = Discovery(make_app.local_url, host_root=tmp_path, timeout=5)
        started = utcnow()
        found = discovery.run()
        finished = utcnow()
    finally:
        hanging.close()
        shutil.rmtree(folder)
    assert found[node.id].reason == "Podman API not answering: timed out"
    assert (finished - started).total_seconds() >= 5
    local = Node.get(Node.source == "local")
    # seen while the hanging node still waited out its timeout, not after it
    assert local.ready and local.last_seen_at < started + timedelta(seconds=5)


def test_a_new_node_is_discovered_at_once_when_asked(make_app, own_podman_service):
    """The leader discovers as soon as it leads, and again when the Nodes page says so."""
    app = make_app(DISCOVERY_SECONDS=600)
    service = app.extensions["hourglass.scheduler"]
    assert service.request_discovery() is False  # not running: nothing to ask
    service.start()
    try:
        wait_for(lambda: Node.select().where(Node.ready).count() == 1, timeout=10,
                 what="the local node discovered on becoming leader")
        Node.create(name="added", url=own_podman_service.url, source="manual")
        nodes_changed.send(app)  # what the Nodes page does after adding a node
        wait_for(lambda: Node.get(Node.name == "added").ready, timeout=10,
                 what="the added node Ready long before the next period")
    finally:
        service.shutdown()


def test_the_probe_reads_the_nodes_own_tree(make_app, own_podman_service, test_image, tmp_path):
    """A probe container on the node sees its /proc/bmsophon, /dev and /etc/cdi (a fake tree
    here, bound in by the node's own Podman); /var/run/cdi is absent and left out."""
    tree = tmp_path / "node"
    make_sophgo_host(tree, cards=[("0x1686", 3)] * 2)
    write_cdi_json(tree, ["0", "all"])
    make_app()
    node = Node.create(name="remote", url=own_podman_service.url, source="manual")
    discovery = Discovery("unix:///nowhere.sock", probe_image=test_image, probe_root=tree)

    finding = discovery.run()[node.id]
    assert finding.ready, finding.reason
    assert chips_of("remote") == [("nvidia.com/gpu", 0, "nvidia.com/gpu=0", None)] + [
        ("sophgo.com/bm1684x", n, f"{tree}/dev/bm-sophon{n}", n // 3) for n in range(6)]
    assert probe_leftovers() == []


def test_the_probe_on_the_real_host_finds_what_reading_it_finds(make_app, own_podman_service,
                                                                test_image):
    make_app()
    node = Node.create(name="remote", url=own_podman_service.url, source="manual")
    finding = Discovery("unix:///nowhere.sock", probe_image=test_image).run()[node.id]
    assert finding.ready, finding.reason
    direct = [chip for chips in discover_all(Path("/")).values() for chip in chips]
    assert finding.chips == direct  # no chips on a machine without accelerators
    assert Node.get_by_id(node.id).ready


def test_a_missing_probe_image_makes_the_node_notready(make_app, own_podman_service):
    make_app()
    node = Node.create(name="remote", url=own_podman_service.url, source="manual")
    image = "localhost/hourglass-no-such-probe:latest"
    Discovery("unix:///nowhere.sock", probe_image=image).run()
    node = Node.get_by_id(node.id)
    assert not node.ready
    assert node.reason == f"probe image {image} missing on the node"
    assert node.last_seen_at is not None and node.podman_version  # it did answer


def test_connections_become_disabled_nodes_until_the_miner_enables_them(
        make_app, own_podman_service, no_connections):
    app = make_app()
    subprocess.run(["podman", "system", "connection", "add", "lab box",
                    own_podman_service.url], check=True, capture_output=True)
    service = app.extensions["hourglass.scheduler"]

    service.discover_now()
    node = Node.get(Node.source == "connection")
    assert (node.name, node.url, node.enabled) == ("lab box", own_podman_service.url, False)
    assert node.reason == "not discovered yet"

    Node.update(enabled=True).where(Node.id == node.id).execute()
    service.discover_now()
    assert Node.get_by_id(node.id).ready
    assert Node.select().count() == 2  # and the local node
