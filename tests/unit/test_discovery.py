"""Discovery without Podman: the probe's output mirrored into a tree, storing what was found,
and keeping the node list in step with the settings. Real SQLite, real device nodes."""

import json
import subprocess
from datetime import timedelta

import pytest

from portal.models import Node, NodeChip, NodeEvent, utcnow
from scheduler.accelerators import Chip, discover_all
from scheduler.connections import Connection
from scheduler.discovery import (
    Discovery,
    Finding,
    address_of,
    podman_supported,
    record,
    unique_name,
)
from scheduler.podman import HostInfo
from scheduler.probe import PROBE_SCRIPT, chips_from_probe, mirror
from tests.fake_hosts import make_nvidia_host, make_sophgo_host, write_cdi_json

INFO = HostInfo("box", "Debian 12 (bookworm)", "6.1.0", "4.3.1", 8, 16 * 2**30)

# What the probe printed on a host with one BM1684 card, in busybox ls's format.
CAPTURED = """\
D proc/bmsophon
F proc/bmsophon/driver_version
| release version:0.4.9   release date: 20240101-120000
D proc/bmsophon/card0
F proc/bmsophon/card0/chipid
| 0x1684
D proc/bmsophon/card0/bmsophon0
D proc/bmsophon/card0/bmsophon1
F proc/bmsophon/card0/bmsophon1/chip_temp
| 41 C
D proc/bmsophon/card0/bmsophon2
C crw-rw-rw-    1 0        0         509,   0 Jan  1 00:00 /host/dev/bm-sophon0
C crw-rw-rw-    1 0        0         509,   1 Jan  1 00:00 /host/dev/bm-sophon1
C crw-rw-rw-    1 0        0         509,   2 Jan  1  2024 /host/dev/bm-sophon2
C crw-rw-rw-    1 0        0         510,   0 Jan  1 00:00 /host/dev/bmdev-ctl
C drwxr-xr-x    2 0        0              80 Jan  1 00:00 /host/dev/nvidia-caps
END
"""


def run_probe_script_here(tree):
    """The probe script run by this host's /bin/sh with GNU ls, ``/host`` being ``tree``."""
    script = PROBE_SCRIPT.replace("/host", str(tree))
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return out.replace(f" {tree}/dev/", " /host/dev/")  # as ls names devices in the container


def test_a_captured_probe_output_gives_the_chips_at_the_nodes_paths(tmp_path):
    chips = chips_from_probe(CAPTURED, tmp_path)
    assert [(c.kind, c.index, c.device, c.card, c.driver) for c in chips] == [
        ("sophgo.com/bm1684", n, f"/dev/bm-sophon{n}", 0, "0.4.9") for n in range(3)]
    assert (tmp_path / "proc/bmsophon/card0/bmsophon1/chip_temp").read_text() == "41 C\n"
    assert not (tmp_path / "dev/nvidia-caps").exists()  # a folder is not a device


def test_the_probe_script_mirrors_a_fake_host_exactly(tmp_path):
    """Run on a tree with 2 SC7 cards, NVIDIA nodes and a CDI spec; the mirror shows the same."""
    tree, scratch = tmp_path / "host", tmp_path / "mirror"
    make_sophgo_host(tree, cards=[("0x1686", 3)] * 2)
    make_nvidia_host(tree, gpus=2)
    write_cdi_json(tree, ["0", "1", "all"])
    (tree / "etc/cdi/notes.yaml").write_text("kind: x\n\\n not an escape\nEND\n| no newline")
    scratch.mkdir()
    chips = chips_from_probe(run_probe_script_here(tree), scratch, tree)
    expected = [chip for found in discover_all(tree).values() for chip in found]
    assert chips == expected
    assert len([c for c in chips if c.kind == "sophgo.com/bm1684x"]) == 6
    assert {c.device for c in chips if c.kind == "nvidia.com/gpu"} == {
        "nvidia.com/gpu=0", "nvidia.com/gpu=1"}
    # Text comes through byte for byte, a last line without a newline gaining one.
    assert (scratch / "etc/cdi/notes.yaml").read_text() == \
        "kind: x\n\\n not an escape\nEND\n| no newline\n"
    assert (scratch / "dev/bm-sophon5").stat().st_rdev == (tree / "dev/bm-sophon5").stat().st_rdev


def test_a_host_without_chips_probes_to_nothing(tmp_path):
    (tmp_path / "host/dev").mkdir(parents=True)
    output = run_probe_script_here(tmp_path / "host")
    assert output == "END\n"
    (tmp_path / "mirror").mkdir()
    assert chips_from_probe(output, tmp_path / "mirror") == []


@pytest.mark.parametrize("output, error", [
    ("D proc/bmsophon\n", "cut short"),
    ("F ../etc/shadow\n| x\nEND\n", "outside"),
    ("F proc/bmsophon/../../../etc/passwd\nEND\n", "outside"),
    ("F /proc/bmsophon/x\nEND\n", "outside"),
    ("F etc/passwd\nEND\n", "outside"),
    ("C crw-rw-rw- 1 0 0 1, 3 Jan 1 00:00 /host/dev/../tmp/x\nEND\n", None),
    ("hello\nEND\n", "unexpected"),
])
def test_output_outside_the_protocol_is_refused(tmp_path, output, error):
    if error is None:  # a device line that does not match is skipped, never made
        mirror(output, tmp_path)
        assert list(tmp_path.rglob("*")) == []
    else:
        with pytest.raises(ValueError, match=error):
            mirror(output, tmp_path)


@pytest.mark.parametrize("version, ok", [
    ("4.0.0", True), ("4.3.1", True), ("5.0.0-dev", True), ("10.1", True),
    ("3.4.4", False), ("", False), ("unknown", False)])
def test_supported_podman_versions(version, ok):
    assert podman_supported(version) is ok


@pytest.mark.parametrize("url, address", [
    ("unix:///run/podman/podman.sock", "203.0.113.9"),
    ("ssh://core@10.0.0.7:22/run/podman/podman.sock", "10.0.0.7"),
    ("ssh://me@gpu-box.lab/run/user/1000/podman/podman.sock", "gpu-box.lab"),
    ("tcp://192.168.1.20:8888", "192.168.1.20")])
def test_address_from_the_url(url, address, monkeypatch):
    """A node on this host (a unix socket) is reached at HOURGLASS_NODE_ADDRESS."""
    monkeypatch.setenv("HOURGLASS_NODE_ADDRESS", "203.0.113.9")
    assert address_of(url) == address


def test_this_hosts_address_is_found_without_a_setting(monkeypatch):
    """The default route's source address: one other nodes can reach, never loopback on a
    host that has a route (this one has)."""
    import ipaddress
    import socket

    monkeypatch.delenv("HOURGLASS_NODE_ADDRESS", raising=False)
    found = ipaddress.ip_address(address_of("unix:///run/podman/podman.sock"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 9))
        assert str(found) == probe.getsockname()[0] and not found.is_loopback


def test_record_stores_the_node_and_replaces_its_chips(app):
    with app.app_context():
        node = Node.create(name="n1", url="unix:///n1.sock", labels='{"zone": "a"}')
        created = node.ready_changed_at
        chips = [Chip("sophgo.com/bm1684x", n, f"/dev/bm-sophon{n}", 0, "1.0") for n in range(3)]
        record(node, Finding(INFO, chips))
        node = Node.get_by_id(node.id)
        assert node.ready and node.reason == "" and node.labels == '{"zone": "a"}'
        assert (node.hostname, node.cpu_millis, node.memory_mib) == ("box", 8000, 16384)
        assert node.ready_changed_at > created and node.last_seen_at is not None
        flipped, row_ids = node.ready_changed_at, {c.index: c.id for c in node.chips}

        # Chip 0 vanishes (marked absent, not deleted: a replica may hold it), chip 2
        # changes, chip 3 appears; chip 1 keeps its row.
        first = chips
        chips = [chips[1], Chip("sophgo.com/bm1684x", 2, "/dev/bm-sophon2", 0, "1.1"),
                 Chip("sophgo.com/bm1684x", 3, "/dev/bm-sophon3", 1, "1.1")]
        record(node, Finding(INFO, chips), now=utcnow() + timedelta(seconds=5))
        rows = {c.index: c for c in NodeChip.select().where(NodeChip.node == node.id)}
        assert sorted(rows) == [0, 1, 2, 3]
        assert [i for i, row in rows.items() if not row.present] == [0]
        assert rows[0].id == row_ids[0] and rows[1].id == row_ids[1]
        assert rows[2].driver == "1.1" and rows[3].card == 1

        # Chip 0 is back: the same row, present again.
        record(node, Finding(INFO, [first[0], *chips]), now=utcnow() + timedelta(seconds=6))
        assert NodeChip.get_by_id(row_ids[0]).present
        node = Node.get_by_id(node.id)
        assert node.ready_changed_at == flipped  # still Ready: no flip

        # Unreachable: NotReady with the reason, flip time moves, chips and last_seen stay.
        seen = node.last_seen_at
        record(node, Finding(None, None, "Podman API not answering: Connection refused"))
        node = Node.get_by_id(node.id)
        assert not node.ready and node.reason.endswith("Connection refused")
        assert node.ready_changed_at > flipped and node.last_seen_at == seen
        assert node.chips.count() == 4 and node.hostname == "box"


def test_each_readiness_flip_and_only_a_flip_writes_a_node_event(app):
    with app.app_context():
        node = Node.create(name="n1", url="unix:///n1.sock")
        start = utcnow()
        steps = [Finding(INFO, []), Finding(INFO, []),
                 Finding(None, None, "Podman API not answering: Connection refused"),
                 Finding(None, None, "Podman API not answering: timed out"),
                 Finding(INFO, [])]
        for n, finding in enumerate(steps):
            record(node, finding, now=start + timedelta(seconds=n))
        events = [(e.ready, e.reason, e.at) for e in
                  NodeEvent.select().where(NodeEvent.node == node.id).order_by(NodeEvent.id)]
        assert events == [
            (True, "", start),
            (False, "Podman API not answering: Connection refused", start + timedelta(seconds=2)),
            (True, "", start + timedelta(seconds=4))]
        assert Node.get_by_id(node.id).ready_changed_at == start + timedelta(seconds=4)


def test_record_for_a_node_removed_meanwhile_does_nothing(app):
    with app.app_context():
        node = Node.create(name="gone", url="unix:///gone.sock")
        node.delete_instance()
        record(node, Finding(INFO, [Chip("nvidia.com/gpu", 0, "nvidia.com/gpu=0")]))
        assert NodeChip.select().count() == 0 and NodeEvent.select().count() == 0


def test_sync_adds_the_local_node_and_disabled_connection_nodes(app):
    with app.app_context():
        Node.create(name="lab", url="ssh://me@lab/run/podman/podman.sock", source="manual")
        discovery = Discovery("unix:///one.sock")
        connections = [Connection("lab", "tcp://10.0.0.2:8080"),
                       Connection("lab", "tcp://10.0.0.3:8080", "/root/.ssh/id"),
                       Connection("same-as-local", "unix:///one.sock")]
        discovery.sync_nodes(connections)
        nodes = {n.name: n for n in Node.select()}
        assert sorted(nodes) == ["lab", "lab-2", "lab-3", "local"]
        assert (nodes["local"].source, nodes["local"].url) == ("local", "unix:///one.sock")
        assert [(nodes[n].source, nodes[n].enabled) for n in ("lab-2", "lab-3")] == \
            [("connection", False)] * 2

        # The setting changes; lab-2 leaves the list, lab-3 too but the miner enabled it.
        Node.update(enabled=True).where(Node.name == "lab-3").execute()
        Discovery("unix:///two.sock").sync_nodes([])
        nodes = {n.name: n for n in Node.select()}
        assert sorted(nodes) == ["lab", "lab-3", "local"]
        assert nodes["local"].url == "unix:///two.sock"

        Discovery("unix:///two.sock").sync_nodes(None)  # the list could not be read
        assert Node.select().count() == 3


def test_unique_names_fit_the_column(app):
    with app.app_context():
        long = "x" * 80
        Node.create(name=unique_name(long), url="unix:///a.sock")
        assert unique_name(long) == "x" * 56 + "-2"
        assert unique_name("  ") == "node"
        assert json.loads(Node.get().labels) == {}
