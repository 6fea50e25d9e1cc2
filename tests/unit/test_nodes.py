"""The Nodes page and the rules behind it: adding endpoints, labels, cordon, drain."""

import json

import pytest

from portal.models import Node, NodeChip
from tests.conftest import PASSWORD
from tests.support import csrf_token, login


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


@pytest.fixture
def node(app):
    """A discovered node with three chips, as discovery would have stored it."""
    with app.app_context():
        node = Node.create(name="box1", url="ssh://root@box1/run/podman/podman.sock",
                           source="manual", hostname="box1", cpu_millis=8000,
                           memory_mib=16384, ready=True, reason="")
        for i in range(3):
            NodeChip.create(node=node, kind="sophgo.com/bm1684x", index=i,
                            device=f"/dev/bm-sophon{i}", card=0)
        return node


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/miner/nodes")})


def test_nodes_page_lists_nodes_with_chips(miner, node):
    html = miner.get("/miner/nodes").get_data(as_text=True)
    assert 'data-node="box1"' in html and "Ready" in html
    assert "3 × <code>sophgo.com/bm1684x</code>" in html
    detail = miner.get(f"/miner/nodes/{node.id}").get_data(as_text=True)
    assert "/dev/bm-sophon2" in detail


def test_the_table_refreshes_as_a_partial(miner, node):
    html = miner.get("/miner/nodes", headers={"HX-Request": "true", "HX-Target": "node-table"}
                     ).get_data(as_text=True)
    assert 'id="node-table"' in html and 'data-node="box1"' in html
    assert "<html" not in html


def test_miner_adds_a_node(app, miner):
    response = post(miner, "/miner/nodes", name="box2", url="tcp://127.0.0.1:8888")
    assert response.status_code == 303
    with app.app_context():
        added = Node.get(Node.name == "box2")
        assert (added.source, added.ready, added.enabled) == ("manual", False, True)


@pytest.mark.parametrize("name,url", [
    ("box 2", "tcp://h:1"), ("<b>x</b>", "tcp://h:1"), ("ok", "http://h:1"),
    ("ok", "tcp://h:1; rm -rf /"), ("ok", "unix:///a b"), ("ok", "tcp://" + "h" * 600),
    ("", "tcp://h:1"), ("ok", ""),
])
def test_bad_nodes_are_refused(app, miner, name, url):
    response = post(miner, "/miner/nodes", name=name, url=url)
    assert response.status_code == 400
    with app.app_context():
        assert Node.select().count() == 0


def test_duplicate_node_is_refused(app, miner, node):
    for name, url in (("box1", "tcp://other:1"), ("box9", node.url)):  # a name, a machine
        response = post(miner, "/miner/nodes", name=name, url=url)
        assert response.status_code == 400
        assert "already exists" in response.get_data(as_text=True)
    with app.app_context():
        assert Node.select().count() == 1


def test_labels_are_validated_and_saved(app, miner, node):
    assert post(miner, f"/miner/nodes/{node.id}/labels", labels="zone=a\ngpu=\n").status_code == 303
    with app.app_context():
        assert json.loads(Node.get_by_id(node.id).labels) == {"gpu": "", "zone": "a"}
    response = post(miner, f"/miner/nodes/{node.id}/labels", labels="bad key=<script>")
    assert response.status_code == 400
    assert "&lt;script&gt;" in response.get_data(as_text=True)  # kept for fixing, escaped
    with app.app_context():
        assert json.loads(Node.get_by_id(node.id).labels) == {"gpu": "", "zone": "a"}


def test_cordon_drain_uncordon(app, miner, node):
    def flags():
        with app.app_context():
            n = Node.get_by_id(node.id)
            return n.cordoned, n.draining

    post(miner, f"/miner/nodes/{node.id}/cordon")
    assert flags() == (True, False)
    post(miner, f"/miner/nodes/{node.id}/uncordon")
    post(miner, f"/miner/nodes/{node.id}/drain")
    assert flags() == (True, True)  # draining implies cordoned
    post(miner, f"/miner/nodes/{node.id}/uncordon")
    assert flags() == (False, False)
    assert post(miner, f"/miner/nodes/{node.id}/explode").status_code == 404


def test_local_node_cannot_be_removed_but_others_can(app, miner, node):
    with app.app_context():
        local = Node.create(name="local", url="unix:///x.sock", source="local")
    post(miner, f"/miner/nodes/{local.id}/remove")
    post(miner, f"/miner/nodes/{node.id}/remove")
    with app.app_context():
        assert [n.name for n in Node.select()] == ["local"]
        assert NodeChip.select().count() == 0


def test_renter_cannot_touch_nodes(client, accounts, node):
    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/renter/")
    assert client.get("/miner/nodes").status_code == 403
    response = client.post(f"/miner/nodes/{node.id}/cordon", data={"csrf_token": token})
    assert response.status_code == 403


def test_a_node_running_replicas_is_not_removed(app, miner, node):
    from portal.models import Pool, Replica, ResourceSpec, Subtask, Task, User

    with app.app_context():
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=512, price_per_hour=1)
        task = Task.create(user=User.get(User.name == "rene"), name="t", image="busybox",
                           pool=Pool.get(Pool.is_default == True))  # noqa: E712
        subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
        Replica.create(task=task, subtask=subtask, index=0, state="running", node=node)
    response = post(miner, f"/miner/nodes/{node.id}/remove")
    assert response.status_code == 303
    assert "still runs 1 replica" in miner.get(f"/miner/nodes/{node.id}").get_data(as_text=True)
    with app.app_context():
        assert Node.select().where(Node.id == node.id).exists()
