"""Work across two nodes on real Podman: peers of a task that spans nodes reach each other
by node address and published port; draining a node moves its work off.

The two nodes are two real Podman services on this host (the session's and a test's own);
each is a node of its own to Hourglass, with its own address as discovery records it.
"""

from pathlib import Path

import pytest
from flask import current_app

from portal.models import Node, Replica, Task, User
from portal.specs import parse_spec, save_spec
from portal.task_views import reason_text, task_view
from portal.tasks import create_task
from portal.users import create_user
from scheduler.discovery import Discovery, host_address
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman

# Rank 0 answers once on its port; rank 1 asks rank 0 at the address HOURGLASS_PEERS gives.
PING = (
    'echo "PEERS=$HOURGLASS_PEERS PORT=$HOURGLASS_PORT"; '
    'if [ "$RANK" = 0 ]; then echo pong | /bin/busybox nc -l -p "$HOURGLASS_PORT"; exit; fi; '
    'peer=${HOURGLASS_PEERS%%,*}; i=0; while [ $i -lt 150 ]; do '
    'got=$(/bin/busybox nc "${peer%:*}" "${peer##*:}" </dev/null 2>/dev/null); '
    '[ -n "$got" ] && { echo "GOT=$got"; exit 0; }; i=$((i+1)); /bin/busybox sleep 0.1; done; '
    'exit 1'
)


@pytest.fixture
def two_nodes(instance, podman_service, own_podman_service, test_image, tmp_path, monkeypatch):
    """An app with two Ready nodes and a "half" spec of which one replica fits a node."""
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Node.create(name="second", url=own_podman_service.url, source="manual")
    Discovery(podman_service.url, probe_image=test_image).run()
    nodes = list(Node.select().order_by(Node.id))
    assert [n.ready for n in nodes] == [True, True], [(n.name, n.reason) for n in nodes]
    cpus = min(n.cpu_millis for n in nodes) / 1000
    save_spec(None, parse_spec("half", f"{cpus * 0.6:.1f}", "0.125", "1", {}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    reconciler = Reconciler(podman_service.url, grace=1, peer_ports=range(31000, 31010))
    yield renter, reconciler, nodes
    for replica in Replica.select(Replica, Node).join(Node).where(Replica.container != ""):
        PodmanBackend(replica.node.url).remove(replica.container)
    ctx.pop()


def settle(reconciler, task, states, timeout=60):
    def done():
        reconciler.run()
        return Task.get_by_id(task.id).state in states
    try:
        wait_for(done, timeout=timeout, interval=0.2, what=f"task {task.id} to reach {states}")
    except AssertionError as timed_out:
        now = Task.get_by_id(task.id)
        found = [(r.state, r.reason) for r in Replica.select().where(Replica.task == task)]
        raise AssertionError(f"{timed_out}: {now.state} {now.reason} {found}") from None
    return Task.get_by_id(task.id)


def replicas_of(task):
    return list(Replica.select(Replica, Node).join(Node).where(Replica.task == task)
                .order_by(Replica.index))


def test_peers_on_two_nodes_reach_each_other_by_address_and_port(two_nodes, test_image):
    renter, reconciler, nodes = two_nodes
    task = create_task(renter, "ping", test_image, ["sh", "-c", PING], {}, "default",
                       [("worker", "half", 2)])
    task = settle(reconciler, task, ("succeeded", "failed"))
    replicas = replicas_of(task)
    outputs = ["".join(PodmanBackend(r.node.url).logs(r.container)) for r in replicas]
    assert task.state == "succeeded", (outputs, [(r.state, r.reason) for r in replicas])
    assert {r.node_id for r in replicas} == {n.id for n in nodes}  # one on each node
    address = host_address()
    assert all(n.address == address for n in Node.select())
    peers = ",".join(f"{address}:{r.peer_port}" for r in replicas)
    for replica, out in zip(replicas, outputs, strict=True):
        assert replica.peer_port in range(31000, 31010)
        assert f"PEERS={peers} PORT={replica.peer_port}" in out
    assert "GOT=pong" in outputs[1]


def test_a_task_on_one_node_keeps_names_and_publishes_nothing(two_nodes, test_image):
    renter, reconciler, _nodes = two_nodes
    task = create_task(renter, "one", test_image, ["sh", "-c", PING.split(";")[0]], {},
                       "default", [("worker", "half", 1)])
    task = settle(reconciler, task, ("succeeded", "failed"))
    (replica,) = replicas_of(task)
    out = "".join(PodmanBackend(replica.node.url).logs(replica.container))
    assert replica.peer_port is None and "PEERS=worker-0 PORT=\n" in out, out


def test_draining_a_node_moves_its_task_to_the_other_node(two_nodes, test_image):
    renter, reconciler, nodes = two_nodes
    task = create_task(renter, "long", test_image, ["sleep", "600"], {"A": "1"}, "default",
                       [("main", "half", 1)])
    task = settle(reconciler, task, ("running",))
    (first,) = replicas_of(task)
    draining = first.node
    Node.update(cordoned=True, draining=True).where(Node.id == draining.id).execute()

    old = settle(reconciler, task, ("stopped",))
    assert reason_text(old.stop_reason) == "its node is draining"
    (stopped,) = replicas_of(old)
    assert stopped.reason == "its node is draining" and stopped.finished_ns

    new = Task.get(Task.rerun_of == old.id)
    assert (new.name, new.image, new.argv, new.env) == (old.name, old.image, old.argv, old.env)
    assert task_view(old).runs_again == [new.id]
    new = settle(reconciler, new, ("running",))
    (moved,) = replicas_of(new)
    assert moved.node_id != draining.id and moved.node_id in {n.id for n in nodes}
    # Nothing runs on the drained node any more, and later passes move nothing again.
    reconciler.run()
    assert Task.select().count() == 2
    assert not Replica.select().where((Replica.node == draining.id)
                                      & Replica.state.in_(("starting", "running"))).exists()


def test_draining_stops_a_task_that_cannot_run_again(two_nodes, test_image):
    """A renter whose balance fell below the minimum: the task stops, no new run."""
    from portal import ledger

    renter, reconciler, _nodes = two_nodes
    task = settle(reconciler, create_task(renter, "long", test_image, ["sleep", "600"], {},
                                          "default", [("main", "half", 1)]), ("running",))
    miner = create_user("mina", "miner", PASSWORD)
    ledger.adjust(renter, -User.get_by_id(renter.id).balance + 1, miner, "test: almost gone")
    (replica,) = replicas_of(task)
    Node.update(cordoned=True, draining=True).where(Node.id == replica.node_id).execute()
    assert settle(reconciler, task, ("stopped",)).stop_reason == "its node is draining"
    assert not Task.select().where(Task.rerun_of == task.id).exists()


def test_a_notebook_on_another_node_answers_at_its_address_and_port(
        two_nodes, podman_service, jupyter_image):
    """The local node cordoned: the notebook lands on the other node; its JupyterLab listens
    on a published node port, where the proxy (here, requests) reaches it."""
    import requests

    from portal.notebooks import active_run, create_notebook

    renter, reconciler, nodes = two_nodes
    local = next(n for n in nodes if n.url == podman_service.url)
    Node.update(cordoned=True).where(Node.id == local.id).execute()
    reconciler.data_root = Path(current_app.config["DATA_ROOT"])
    notebook = create_notebook(renter, "far lab", jupyter_image, "half", "default")
    run = settle(reconciler, active_run(notebook), ("running",))
    (replica,) = replicas_of(run)
    assert replica.node_id != local.id and replica.peer_port in range(31000, 31010)
    assert replica.address == f"{host_address()}:{replica.peer_port}"

    def answers():
        try:
            return requests.get(f"http://{replica.address}/nb/{replica.id}/api/status",
                                headers={"Authorization": f"token {run.secret}"},
                                timeout=2).status_code == 200
        except requests.ConnectionError:
            return False
    wait_for(answers, timeout=60, interval=0.1, what="JupyterLab at the node's port")


def test_a_task_spanning_nodes_waits_for_free_ports_and_says_so(two_nodes, test_image):
    """One peer port for a host with two nodes: the 2-replica task cannot have one per
    replica, so it waits, holding nothing, and its reason names the address."""
    renter, reconciler, _nodes = two_nodes
    reconciler.peer_ports = range(31000, 31001)
    task = create_task(renter, "ping", test_image, ["sh", "-c", PING], {}, "default",
                       [("worker", "half", 2)])
    reconciler.run()
    task = Task.get_by_id(task.id)
    assert task.state == "pending"
    assert reason_text(task.reason) == (
        f"waiting for a free node port at {host_address()}: this task's replicas span nodes "
        "and need one each (HOURGLASS_PEER_PORTS)")
    assert not Replica.select().where((Replica.task == task)
                                      & (Replica.state != "pending")).exists()
    reconciler.peer_ports = range(31000, 31002)
    assert settle(reconciler, task, ("succeeded", "failed")).state == "succeeded"
