"""The Slurm backend's client and discovery against the real two-node cluster (``slurm_cluster``):
a heterogeneous job submitted, read component by component with its chips, cancelled by its
leader; Slurm's errors; a slurmrestd that stopped; the cluster's nodes and chips as Hourglass
nodes, NotReady while Slurm drains one.

The cluster is the session's: ``slurm`` cancels the jobs a test left, resumes the nodes and
waits for both to be idle again.
"""

import subprocess

import pytest

from portal.models import Node, NodeChip, NodeEvent, Pool, SlurmCluster
from portal.slurm import SlurmError
from scheduler.discovery import Discovery
from scheduler.slurm_discovery import discover_cluster, discover_clusters
from scheduler.slurm_rest import SlurmClient, SlurmRefused
from tests.slurm_cluster import CHIPS, NODE_CPUS, NODE_MEMORY_MB, NODES, PARTITION
from tests.support import wait_for

pytestmark = pytest.mark.slurm

ENDED = {"CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL"}
TPU = ("tpu", "bm1684x")


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster; every job still pending or running is cancelled and both nodes
    are resumed and idle again at the end."""
    yield slurm_cluster
    client = SlurmClient(f"unix://{slurm_cluster.rest}")
    for job in slurm_cluster.request("GET", "/jobs")[1]["jobs"]:
        if job["job_state"] in ("PENDING", "RUNNING"):
            client.cancel(job["job_id"])
    for name in NODES:
        if client_node(client, name).flags:
            slurm_cluster.run("scontrol", "update", f"nodename={name}", "state=resume",
                              check=False)
    wait_for(lambda: all(n.state == "idle" and not n.flags for n in client.nodes()),
             timeout=30, what="both nodes idle again")


@pytest.fixture
def client(slurm):
    return SlurmClient(f"unix://{slurm.rest}")


def client_node(client, name):
    return next(node for node in client.nodes() if node.name == name)


def component(cluster, chips):
    """One component: one task with ``chips`` chips in partition tpu (no environment: the
    client gives it one)."""
    return {"name": "hg-test", "partition": PARTITION, "tasks": 1,
            "gres": f"tpu:bm1684x:{chips}", "current_working_directory": str(cluster.root),
            "standard_output": str(cluster.root / "job-%j.out")}


def test_ping_nodes_and_partitions(client):
    client.ping()
    assert client.partitions() == [PARTITION]
    nodes = sorted(client.nodes(), key=lambda node: node.name)
    assert [node.name for node in nodes] == list(NODES)
    for node in nodes:
        assert (node.state, node.flags, node.reason) == ("idle", [], "")
        assert (node.cpus, node.memory_mib) == (NODE_CPUS, NODE_MEMORY_MB)
        assert node.gres == {TPU: CHIPS}
        assert node.partitions == [PARTITION]
        assert node.address == "127.0.0.1"


def job_of(client, job_id):
    """Job (or component) ``job_id`` from the client's job list; None when not listed."""
    return next((job for job in client.jobs() if job.id == job_id), None)


def test_a_heterogeneous_job_read_by_component_and_cancelled_by_its_leader(slurm, client):
    leader = client.submit([component(slurm, 2), component(slurm, 2)],
                           "#!/bin/sh\nsleep 300\n")
    components = wait_for(
        lambda: (c := client.job(leader)) and all(j.state == "RUNNING" for j in c)
        and c, timeout=30, what="both components running")
    assert [(j.het_job_id, j.het_offset) for j in components] == [(leader, 0), (leader, 1)]
    assert components[0].id == leader and components[1].id != leader
    held = []
    for job in components:
        assert job.partition == PARTITION and job.reason == ""
        (node,) = job.nodes
        assert node in NODES and list(job.gres_detail) == [node]
        indices = job.gres_detail[node][TPU]
        assert len(indices) == 2 and set(indices) <= set(range(CHIPS))
        held += [(node, index) for index in indices]
        assert job.start is not None and job.exit_code == 0
    assert len(set(held)) == 4  # no chip twice
    # A component listed with its own id.
    second = job_of(client, components[1].id)
    assert (second.het_job_id, second.het_offset, second.nodes) == (leader, 1,
                                                                     components[1].nodes)
    assert job_of(client, leader).het_offset == 0

    client.cancel(leader)
    ended = wait_for(
        lambda: all(j is None or j.state in ENDED for j in
                    (job_of(client, leader), job_of(client, components[1].id))),
        timeout=30, what="both components ended")
    assert ended
    for job in client.job(leader):  # until MinJobAge, Slurm still shows them
        assert job.state == "CANCELLED" and job.gres_detail == {}
    client.cancel(leader)  # cancelling again is no error


def test_a_job_slurm_does_not_know(client):
    assert job_of(client, 999999) is None and client.job(999999) == []
    client.cancel(999999)  # nothing to cancel: no error


def test_slurms_refusals_are_slurm_errors(slurm, client):
    with pytest.raises(SlurmRefused, match="Requested node configuration is not available"):
        client.submit([component(slurm, CHIPS + 1)], "#!/bin/sh\nsleep 300\n")
    with pytest.raises(SlurmRefused, match="Invalid partition name specified"):
        client.submit([{**component(slurm, 1), "partition": "nosuch"}], "#!/bin/sh\ntrue\n")
    with pytest.raises(SlurmRefused, match='Unknown key "tres_per_node"'):
        client.submit([{**component(slurm, 1), "tres_per_node": "gres:tpu:1"}],
                      "#!/bin/sh\ntrue\n")


def test_a_stopped_slurmrestd_is_a_slurm_error(slurm, tmp_path):
    socket = tmp_path / "restd.sock"
    restd = subprocess.Popen(
        ["slurmrestd", "-a", "rest_auth/local", "-s", "openapi/v0.0.38", f"unix:{socket}"],
        env={**slurm.env, "SLURMRESTD_SECURITY": "disable_user_check"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        client = SlurmClient(f"unix://{socket}", timeout=5)
        wait_for(lambda: _answers(client), what="the second slurmrestd")
        assert {node.name for node in client.nodes()} == set(NODES)
    finally:
        restd.terminate()
        restd.wait(10)
    with pytest.raises(SlurmError, match=f"slurmrestd at {socket} is not answering: "):
        client.ping()


def _answers(client):
    try:
        client.ping()
    except SlurmError:
        return False
    return True


def test_a_socket_nobody_listens_on(tmp_path):
    with pytest.raises(SlurmError, match="is not answering: No such file or directory"):
        SlurmClient(f"unix://{tmp_path / 'none.sock'}").nodes()


# --- discovery ----------------------------------------------------------------------------


def lab(slurm):
    """The session's cluster as SlurmCluster "lab" (each node's Podman socket and devices in
    its own folder), its partition tpu mapped to a pool; (cluster, pool)."""
    cluster = SlurmCluster.create(
        name="lab", rest_url=f"unix://{slurm.rest}",
        podman_url=f"unix://{slurm.root}/{{node}}/podman.sock",
        host_root=f"{slurm.root}/{{node}}")
    return cluster, Pool.create(name="slurm-tpu", slurm_cluster=cluster, partition=PARTITION)


def test_the_clusters_nodes_and_chips_become_nodes(app, slurm, tmp_path):
    with app.app_context():
        cluster, pool = lab(slurm)
        podman = Node.create(name="box", url="unix:///box.sock", ready=True, reason="")
        ghost = Node.create(name="lab-node9", url="unix:///node9.sock", source="slurm",
                            slurm_cluster=cluster, pool=pool, ready=True, reason="")

        found = discover_cluster(cluster)
        nodes = {node.name: node for node in Node.select().where(Node.slurm_cluster == cluster)}
        assert sorted(nodes) == [f"lab-{name}" for name in NODES] + ["lab-node9"]
        assert sorted(found.values()) == ["", "", "not in Slurm cluster lab any more"]
        assert found[ghost.id] == Node.get_by_id(ghost.id).reason and not nodes["lab-node9"].ready
        ghost.delete_instance()
        for name in NODES:
            node = nodes[f"lab-{name}"]
            assert (node.ready, node.reason, node.source, node.enabled) == (True, "", "slurm",
                                                                           True)
            assert node.pool_id == pool.id and node.address == "127.0.0.1"
            assert node.url == f"unix://{slurm.root}/{name}/podman.sock"
            assert (node.cpu_millis, node.memory_mib) == (NODE_CPUS * 1000, NODE_MEMORY_MB)
            chips = list(node.chips.order_by(NodeChip.index))
            assert [(c.kind, c.index, c.device, c.present) for c in chips] == [
                ("sophgo.com/bm1684x", i, str(slurm.devices[name][i]), True)
                for i in range(CHIPS)]
            assert [e.ready for e in node.events] == [True]
        assert Node.get_by_id(podman.id).ready

        # Slurm drains node2: NotReady with Slurm's reason, its chips kept; node1 stays.
        slurm.run("scontrol", "update", "nodename=node2", "state=drain", "reason=maintenance")
        discover_cluster(cluster)
        drained = Node.get_by_id(nodes["lab-node2"].id)
        assert (drained.ready, drained.reason) == (False, "Slurm: IDLE+DRAIN (maintenance)")
        assert [(e.ready, e.reason) for e in drained.events.order_by(NodeEvent.id)] == [
            (True, ""), (False, "Slurm: IDLE+DRAIN (maintenance)")]
        assert drained.chips.where(NodeChip.present).count() == CHIPS
        assert Node.get_by_id(nodes["lab-node1"].id).ready

        # Resumed, it is NOT_RESPONDING until its slurmd answers Slurm's ping; then Ready.
        slurm.run("scontrol", "update", "nodename=node2", "state=resume")
        wait_for(lambda: discover_cluster(cluster)[drained.id] == "", timeout=30,
                 what="node2 Ready again")
        assert Node.select().where(Node.slurm_cluster == cluster).count() == len(NODES)

        # They may share one Podman service (a cluster on one host), even a Podman node's,
        # each with its own devices; with the same devices too, they would be one machine.
        cluster.podman_url = podman.url
        cluster.save()
        assert set(discover_cluster(cluster).values()) == {""}
        assert {n.url for n in Node.select()} == {podman.url}
        host_root, cluster.host_root = cluster.host_root, str(slurm.root)
        cluster.save()
        assert set(discover_cluster(cluster).values()) == {
            "its Podman URL and host root are another node's: give each node its own with "
            "{node} or {address} in the cluster's Podman URL or host root"}
        cluster.host_root = "/"  # the Podman node's own devices: one machine twice too
        cluster.save()
        assert set(discover_cluster(cluster).values()) == {
            "its Podman URL and host root are another node's: give each node its own with "
            "{node} or {address} in the cluster's Podman URL or host root"}
        assert Node.get_by_id(podman.id).ready
        cluster.podman_url = f"unix://{slurm.root}/{{node}}/podman.sock"
        cluster.host_root = host_root
        cluster.save()

        # The pool maps another partition: the nodes stay, NotReady.
        Pool.update(partition="gpu").where(Pool.id == pool.id).execute()
        discover_cluster(cluster)
        for node in Node.select().where(Node.slurm_cluster == cluster):
            assert (node.ready, node.reason) == (False,
                                                 "not in partition gpu of Slurm cluster lab")

        # Its slurmrestd does not answer: every node of it NotReady, the Podman node not.
        Pool.update(partition=PARTITION).where(Pool.id == pool.id).execute()
        discover_cluster(cluster)
        cluster.rest_url = f"unix://{tmp_path / 'none.sock'}"
        cluster.save()
        discover_cluster(cluster)
        for node in Node.select().where(Node.slurm_cluster == cluster):
            assert not node.ready and node.reason.startswith(
                "Slurm cluster lab: slurmrestd at ")
        assert Node.get_by_id(podman.id).ready


def test_the_discovery_job_leaves_slurm_nodes_to_slurm(app, slurm):
    with app.app_context():
        cluster, _ = lab(slurm)
        discovery = Discovery("unix:///nowhere.sock", clusters=discover_clusters)
        discovery.run()
        found = discovery.run()  # the cluster's nodes exist now: still not Podman's to discover
        nodes = list(Node.select().where(Node.slurm_cluster == cluster))
        assert len(nodes) == len(NODES) and all(node.ready for node in nodes)
        assert not set(found) & {node.id for node in nodes}
        local = Node.get(Node.source == "local")
        assert set(found) == {local.id} and not found[local.id].ready
