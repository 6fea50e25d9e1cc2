"""Slurm nodes as Hourglass nodes, without a cluster: names, readiness and chips from the real
cluster's captured node list (``slurm_answers.json``), and a cluster whose slurmrestd does
not answer. The real cluster's discovery is tests/integration/test_slurm_backend.py."""

import json
from pathlib import Path

from portal.models import Node, NodeChip, NodeEvent, Pool, SlurmCluster
from scheduler import inventory
from scheduler.accelerators.base import Chip
from scheduler.slurm_discovery import (
    chips_of,
    discover_cluster,
    discover_clusters,
    fill,
    gres_kind,
    node_name,
    readiness,
)
from scheduler.slurm_rest import parse_node

ANSWERS = json.loads((Path(__file__).parent / "slurm_answers.json").read_text())


def captured(answer, index):
    return parse_node(ANSWERS[answer]["body"]["nodes"][index])


def test_names_fit_the_rules_for_node_names():
    assert node_name("lab", "node1") == "lab-node1"
    assert node_name("lab", "cn@1/x") == "lab-cn-1-x"
    long = node_name("c" * 40, "n" * 40)
    assert len(long) == 64 and long != node_name("c" * 40, "n" * 39 + "m")
    assert long == node_name("c" * 40, "n" * 40)  # the same every time


def test_templates_are_filled_per_node():
    node = captured("nodes", 0)
    assert fill("ssh://root@{address}/run/podman/podman.sock", node) == \
        "ssh://root@127.0.0.1/run/podman/podman.sock"
    assert fill("/srv/hosts/{node}", node) == "/srv/hosts/node1"


def test_gres_kinds():
    assert gres_kind("tpu", "bm1684x") == "sophgo.com/bm1684x"
    assert gres_kind("tpu", "bm1684") == "sophgo.com/bm1684"
    assert gres_kind("gpu", "a100") == gres_kind("gpu", "") == "nvidia.com/gpu"
    assert gres_kind("tpu", "") is None and gres_kind("shard", "") is None


def test_readiness_is_slurms():
    assert readiness(captured("nodes", 1)) == ""
    assert readiness(captured("nodes_busy", 0)) == ""  # mixed, PLANNED
    assert readiness(captured("nodes_drain", 1)) == "Slurm: IDLE+DRAIN (maintenance)"
    down = captured("nodes", 0)
    down.state, down.flags, down.reason = "down", ["NOT_RESPONDING"], "Not responding"
    assert readiness(down) == "Slurm: DOWN+NOT_RESPONDING (Not responding)"


def test_chips_of_the_gres_in_file_order():
    node = captured("nodes", 0)
    assert chips_of(node, "/srv/hosts/node1/") == [
        Chip("sophgo.com/bm1684x", i, f"/srv/hosts/node1/dev/bm-sophon{i}") for i in range(3)]
    node.gres = {("gpu", "a100"): 2, ("shard", ""): 8}
    assert chips_of(node, "/") == [Chip("nvidia.com/gpu", 0, "/dev/nvidia0"),
                                   Chip("nvidia.com/gpu", 1, "/dev/nvidia1")]


def test_a_cluster_that_does_not_answer(app, tmp_path):
    with app.app_context():
        cluster = SlurmCluster.create(name="lab", rest_url=f"unix://{tmp_path / 'none.sock'}")
        pool = Pool.create(name="slurm", slurm_cluster=cluster, partition="tpu")
        node = Node.create(name="lab-node1", url="ssh://root@10.0.0.1/run/podman/podman.sock",
                           source="slurm", slurm_cluster=cluster, pool=pool, ready=True,
                           reason="")
        NodeChip.create(node=node, kind="sophgo.com/bm1684x", index=0, device="/dev/bm-sophon0")
        podman = Node.create(name="box", url="unix:///box.sock", ready=True, reason="")

        reason = ("Slurm cluster lab: slurmrestd at "
                  f"{tmp_path / 'none.sock'} is not answering: No such file or directory.")
        assert discover_cluster(cluster) == {node.id: reason}
        node = Node.get_by_id(node.id)
        assert (node.ready, node.reason) == (False, reason)
        assert [c.present for c in node.chips] == [True]  # what Slurm said last stands
        assert [(e.ready, e.reason) for e in node.events] == [(False, reason)]
        assert Node.get_by_id(podman.id).ready
        assert NodeEvent.select().where(NodeEvent.node == podman.id).count() == 0

        # The discovery job looks at every cluster.
        Node.update(ready=True, reason="").where(Node.id == node.id).execute()
        discover_clusters()
        assert (Node.get_by_id(node.id).ready, Node.get_by_id(node.id).reason) == (False, reason)


def test_hourglass_never_places_on_a_slurm_node(app):
    """Slurm places a Slurm pool's replicas: its Ready compute nodes are not schedulable for
    Hourglass's own placement, while a Podman node beside them is."""
    with app.app_context():
        cluster = SlurmCluster.create(name="lab", rest_url="unix:///run/slurmrestd.sock")
        pool = Pool.create(name="slurm", slurm_cluster=cluster, partition="tpu")
        slurm = Node.create(name="lab-node1", url="ssh://root@10.0.0.1/run/podman/podman.sock",
                            source="slurm", slurm_cluster=cluster, pool=pool, ready=True,
                            reason="", cpu_millis=2000, memory_mib=1024)
        podman = Node.create(name="box", url="unix:///box.sock", ready=True, reason="",
                             cpu_millis=2000, memory_mib=1024)
        states = {state.id: state.schedulable for state in inventory.node_states()}
        assert states == {slurm.id: False, podman.id: True}
