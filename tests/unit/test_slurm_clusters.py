"""Slurm clusters on the miner's Nodes page and in the API, and pools mapped to their
partitions (portal.slurm, portal.pools.set_pool_slurm). The pages ask through the
scheduler's own slurmrestd client (the app's "hourglass.slurm"): the real two-node cluster
answers (its one partition is "tpu"), a socket nobody listens on does not."""

import socket

import pytest

from portal import slurm
from portal.access import open_pool, open_pools
from portal.api.pools import POOL
from portal.api.slurm_clusters import CLUSTER
from portal.models import (
    Group,
    Membership,
    Node,
    Pool,
    PoolGroup,
    Replica,
    ResourceSpec,
    SlurmCluster,
    Subtask,
    Task,
)
from portal.pools import create_pool, default_pool, move_node, set_pool_slurm
from portal.slurm import ClusterError
from portal.tokens import create_token
from portal.units import ResourceError
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.SECRET-SIGNATURE"
UNIX = "unix:///run/slurmrestd.sock"


@pytest.fixture
def live(app, slurm_cluster):
    """Cluster "lab" on the real two-node cluster's slurmrestd: it lists partition "tpu"."""
    return make_cluster(app, rest_url=f"unix://{slurm_cluster.rest}")


@pytest.fixture
def listening(tmp_path):
    """A unix socket nobody answers on; ``asked(listening)`` says whether a client called."""
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "quiet.sock"))
        listener.listen()
        listener.setblocking(False)
        yield listener


def asked(listener):
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def silent_url(tmp_path):
    """The slurmrestd address of a socket nobody listens on."""
    return f"unix://{tmp_path}/none.sock"


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


@pytest.fixture
def api(app, client, accounts):
    """``api(who, method, path, json=...)`` with the miner's or the renter's token."""
    with app.app_context():
        tokens = {"mina": create_token(accounts["miner"], "t")[1],
                  "rene": create_token(accounts["renter"], "t")[1]}

    def call(who, method, path, **kwargs):
        return client.open(f"/api/v1{path}", method=method,
                           headers={"Authorization": f"Bearer {tokens[who]}"}, **kwargs)

    return call


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/miner/nodes")})


def cluster_form(**changes):
    return {"name": "lab", "rest_url": UNIX, "user": "", "token": "",
            "podman_url": "ssh://root@{address}/run/podman/podman.sock", "host_root": "/",
            **changes}


def make_cluster(app, **changes):
    with app.app_context():
        return slurm.create_cluster(**cluster_form(**changes))


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("changes,field", [
    ({"name": ""}, "name"),
    ({"name": "a b"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"rest_url": ""}, "rest_url"),
    ({"rest_url": "unix://run/slurmrestd.sock"}, "rest_url"),  # not absolute
    ({"rest_url": "unix:///run/a b.sock"}, "rest_url"),
    ({"rest_url": "ftp://h:6820"}, "rest_url"),
    ({"rest_url": "https://alice:pw@h:6820", "user": "alice", "token": SECRET}, "rest_url"),
    ({"rest_url": "https://h:6820/?user=alice", "user": "alice", "token": SECRET}, "rest_url"),
    ({"rest_url": "https://h:6820/#x", "user": "alice", "token": SECRET}, "rest_url"),
    ({"rest_url": "https://h:99999", "user": "alice", "token": SECRET}, "rest_url"),
    ({"rest_url": "https://h:6820; rm -rf /", "user": "alice", "token": SECRET}, "rest_url"),
    ({"user": "alice"}, "user"),  # a unix socket: local authentication
    ({"token": SECRET}, "token"),
    ({"rest_url": "https://h:6820", "token": SECRET}, "user"),
    ({"rest_url": "https://h:6820", "user": "alice"}, "token"),
    ({"rest_url": "https://h:6820", "user": "alice", "token": "two words"}, "token"),
    ({"podman_url": "http://{address}:8080"}, "podman_url"),
    ({"podman_url": "ssh://root@{host}/run/podman/podman.sock"}, "podman_url"),
    ({"podman_url": "ssh://root@{address/run/podman/podman.sock"}, "podman_url"),
    ({"podman_url": "ssh://root@{address}/a b"}, "podman_url"),
    ({"host_root": "srv/{node}"}, "host_root"),
    ({"host_root": "/srv/{address}"}, "host_root"),
    ({"host_root": "/srv/{node}/../etc"}, "host_root"),
    ({"host_root": "/srv/{node"}, "host_root"),
])
def test_the_rules_refuse(app, changes, field):
    with app.app_context(), pytest.raises(ClusterError) as refused:
        slurm.create_cluster(**cluster_form(**changes))
    assert field in refused.value.errors, refused.value.errors
    with app.app_context():
        assert SlurmCluster.select().count() == 0


@pytest.mark.parametrize("changes", [
    {},
    {"rest_url": "https://slurm.lab.example:6820", "user": "alice", "token": SECRET},
    {"rest_url": "http://[::1]:6820/", "user": "slurm_user", "token": SECRET},
    {"podman_url": "unix:///run/podman/podman.sock", "host_root": "/srv/hosts/{node}"},
    {"podman_url": "tcp://{address}:8888"},
    {"podman_url": "ssh://core@{node}.lab:2222/run/user/1000/podman/podman.sock"},
])
def test_the_rules_take(app, changes):
    cluster = make_cluster(app, **changes)
    with app.app_context():
        stored = SlurmCluster.get_by_id(cluster.id)
    assert stored.rest_url == cluster_form(**changes)["rest_url"]
    assert stored.token == changes.get("token", "")


def test_a_name_is_unique(app):
    make_cluster(app)
    with app.app_context(), pytest.raises(ClusterError) as refused:
        slurm.create_cluster(**cluster_form(rest_url="unix:///run/other.sock"))
    assert "taken" in refused.value.errors["name"]


def test_the_token_stays_unless_a_new_one_is_given(app):
    cluster = make_cluster(app, rest_url="https://h:6820", user="alice", token=SECRET)
    with app.app_context():
        slurm.update_cluster(cluster, **cluster_form(rest_url="https://h:6821", user="alice"))
        assert SlurmCluster.get_by_id(cluster.id).token == SECRET
        slurm.update_cluster(cluster, token="new.jwt.value")
        assert SlurmCluster.get_by_id(cluster.id).token == "new.jwt.value"
        slurm.update_cluster(cluster, rest_url=UNIX, user="")  # local auth: the token goes
        assert SlurmCluster.get_by_id(cluster.id).token == ""


def test_a_cluster_running_replicas_is_not_removed(app, accounts):
    cluster = make_cluster(app)
    with app.app_context():
        node = Node.create(name="node1", url="ssh://root@node1/p.sock", source="slurm",
                           slurm_cluster=cluster)
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=1024, price_per_hour=1)
        task = Task.create(user=accounts["renter"], name="t", image="busybox",
                           pool=default_pool(), state="running")
        subtask = Subtask.create(task=task, role="main", spec=spec, count=1)
        Replica.create(task=task, subtask=subtask, index=0, state="running", node=node,
                       price_per_hour=1)
        with pytest.raises(ClusterError, match="still runs 1 replica"):
            slurm.remove_cluster(cluster)
        assert SlurmCluster.get_or_none(SlurmCluster.id == cluster.id)


# --- pools mapped to partitions -----------------------------------------------------------


def test_a_pool_whose_slurm_job_is_not_cancelled_yet_stays_mapped(app, accounts):
    """Its replicas ended, its job not cancelled yet (slurmrestd down, say): unmapped, no pass
    would cancel it any more."""
    cluster = make_cluster(app)
    with app.app_context():
        lab = create_pool("Lab-A")
        set_pool_slurm(lab, cluster, "tpu", offered=["tpu"])
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=1024, price_per_hour=1)
        task = Task.create(user=accounts["renter"], name="t", image="busybox", pool=lab,
                           state="stopped", slurm_job=41)
        subtask = Subtask.create(task=task, role="main", spec=spec, count=1)
        Replica.create(task=task, subtask=subtask, index=0, state="stopped")
        with pytest.raises(ResourceError, match="1 Slurm job.* not cancelled yet"):
            set_pool_slurm(Pool.get_by_id(lab.id), None, "")
        Task.update(slurm_job_done=True).where(Task.id == task.id).execute()
        assert set_pool_slurm(Pool.get_by_id(lab.id), None, "").slurm_cluster is None



def test_pool_mapping_rules(app):
    cluster = make_cluster(app)
    with app.app_context():
        lab, other, podman = create_pool("Lab-A"), create_pool("Lab-B"), create_pool("Boxes")
        box = Node.create(name="box", url="ssh://root@box/p.sock")
        move_node(box, podman)
        with pytest.raises(ResourceError) as refused:
            set_pool_slurm(default_pool(), cluster, "tpu")
        assert "default pool" in refused.value.errors["cluster"]
        with pytest.raises(ResourceError) as refused:
            set_pool_slurm(podman, cluster, "tpu")
        assert "Podman nodes" in refused.value.errors["cluster"]
        with pytest.raises(ResourceError) as refused:
            set_pool_slurm(lab, cluster, "tpu; scancel", offered=None)
        assert "partition" in refused.value.errors
        with pytest.raises(ResourceError) as refused:
            set_pool_slurm(lab, cluster, "gpu", offered=["debug", "tpu"])
        assert "has no partition 'gpu'" in refused.value.errors["partition"]
        set_pool_slurm(lab, cluster, "tpu", offered=["debug", "tpu"])
        with pytest.raises(ResourceError) as refused:
            set_pool_slurm(other, cluster, "tpu")
        assert "already another pool's" in refused.value.errors["partition"]
        with pytest.raises(ResourceError):  # a Podman node does not join a Slurm pool
            move_node(box, lab)
        assert (Pool.get_by_id(lab.id).slurm_cluster_id, Pool.get_by_id(lab.id).partition) == (
            cluster.id, "tpu")
        assert Pool.get_by_id(other.id).slurm_cluster_id is None
        assert Node.get_by_id(box.id).pool_id == podman.id
        set_pool_slurm(lab, None)
        assert (Pool.get_by_id(lab.id).slurm_cluster_id, Pool.get_by_id(lab.id).partition) == (
            None, "")
        set_pool_slurm(other, cluster, "tpu")  # free again


# --- the pages ------------------------------------------------------------------------------


def test_miner_adds_a_cluster_and_the_token_is_never_shown(app, miner):
    # a loopback port nobody listens on: the Pools page's question is refused at once
    response = post(miner, "/miner/slurm-clusters", **cluster_form(
        rest_url="https://127.0.0.1:9", user="alice", token=SECRET))
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    with app.app_context():
        cluster = SlurmCluster.get(SlurmCluster.name == "lab")
        assert (cluster.user, cluster.token) == ("alice", SECRET)
        Node.create(name="node1", url="ssh://root@node1/p.sock", source="slurm",
                    slurm_cluster=cluster)
    html = miner.get("/miner/nodes").get_data(as_text=True)
    assert 'data-cluster="lab"' in html and "https://127.0.0.1:9" in html
    row = html.split('data-cluster="lab"')[1].split("</tr>")[0]
    assert f'<span id="cluster-nodes-{cluster.id}">1</span>' in row  # the node it brought
    edit = miner.get(f"/miner/nodes?cluster={cluster.id}").get_data(as_text=True)
    assert 'value="https://127.0.0.1:9"' in edit
    for page in (html, edit, miner.get("/miner/pools").get_data(as_text=True)):
        assert SECRET not in page and "SECRET-SIGNATURE" not in page
    # saved with the token left empty: kept
    response = post(miner, f"/miner/slurm-clusters/{cluster.id}", **cluster_form(
        rest_url="https://127.0.0.1:10", user="alice"))
    assert response.status_code == 303
    with app.app_context():
        assert SlurmCluster.get_by_id(cluster.id).token == SECRET


def test_a_refused_cluster_shows_its_errors_next_to_the_fields(app, miner):
    response = post(miner, "/miner/slurm-clusters", **cluster_form(
        rest_url="https://alice:pw@h:6820", podman_url="ssh://{host}/x", token=SECRET))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "no user, password, query or fragment" in html
    assert "{node} and {address}, nothing else in braces" in html
    assert SECRET not in html
    with app.app_context():
        assert SlurmCluster.select().count() == 0


@pytest.mark.slurm
def test_test_connection_answers_in_place(app, miner, live, tmp_path):
    gone = make_cluster(app, name="gone", rest_url=silent_url(tmp_path))
    token = csrf_token(miner, "/miner/nodes")
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    path = f"/miner/slurm-clusters/{live.id}/test"
    response = miner.post(path, headers=headers)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == '<span class="badge ok">ok</span>'
    answer = miner.post(f"/miner/slurm-clusters/{gone.id}/test", headers=headers)
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    assert text.startswith('<small class="error-text">') and "badge ok" not in text
    assert f"slurmrestd at {tmp_path}/none.sock is not answering" in text  # gone's own socket
    plain = miner.post(path, data={"csrf_token": token})
    assert plain.status_code == 303


def test_test_connection_without_a_client_says_so(app, miner, monkeypatch):
    monkeypatch.delitem(app.extensions, "hourglass.slurm", raising=False)
    cluster = make_cluster(app)
    token = csrf_token(miner, "/miner/nodes")
    answer = miner.post(f"/miner/slurm-clusters/{cluster.id}/test",
                        headers={"HX-Request": "true", "X-CSRFToken": token})
    assert "runs no Slurm client" in answer.get_data(as_text=True)


@pytest.mark.slurm
def test_the_pools_page_maps_a_partition(app, miner, live):
    cluster = live
    with app.app_context():
        lab = create_pool("Lab-A")
    html = miner.get("/miner/pools").get_data(as_text=True)
    assert '<option value="tpu" label="lab">' in html
    assert f'action="/miner/pools/{default_pool_id(app)}/slurm"' not in html
    response = post(miner, f"/miner/pools/{lab.id}/slurm", cluster=str(cluster.id),
                    partition="gpu")
    assert response.status_code == 400
    assert "has no partition &#39;gpu&#39;" in response.get_data(as_text=True)
    response = post(miner, f"/miner/pools/{lab.id}/slurm", cluster=str(cluster.id),
                    partition="tpu")
    assert response.status_code == 303
    with app.app_context():
        assert Pool.get_by_id(lab.id).partition == "tpu"
    assert "Slurm pool: partition tpu of cluster lab" in miner.get("/miner/pools").get_data(
        as_text=True)
    assert post(miner, f"/miner/pools/{lab.id}/slurm", cluster="999",
                partition="tpu").status_code == 400
    assert post(miner, f"/miner/pools/{lab.id}/slurm", cluster="").status_code == 303
    with app.app_context():
        assert Pool.get_by_id(lab.id).slurm_cluster_id is None


def test_a_cluster_that_does_not_list_partitions_takes_a_typed_one(app, miner, tmp_path):
    cluster = make_cluster(app, rest_url=silent_url(tmp_path))
    with app.app_context():
        lab = create_pool("Lab-A")
    html = miner.get("/miner/pools").get_data(as_text=True)
    assert (f"Cluster lab did not list its partitions (slurmrestd at {tmp_path}/none.sock "
            "is not answering") in html
    assert '<option value="tpu" label="lab">' not in html
    assert post(miner, f"/miner/pools/{lab.id}/slurm", cluster=str(cluster.id),
                partition="tpu").status_code == 303


def default_pool_id(app):
    with app.app_context():
        return default_pool().id


def test_posts_need_the_csrf_token(app, miner, listening):
    cluster = make_cluster(app, rest_url=f"unix://{listening.getsockname()}")
    with app.app_context():
        lab = create_pool("Lab-A")
    for path, data in ((("/miner/slurm-clusters", cluster_form(name="other"))),
                       (f"/miner/slurm-clusters/{cluster.id}", cluster_form(name="renamed")),
                       (f"/miner/slurm-clusters/{cluster.id}/delete", {}),
                       (f"/miner/slurm-clusters/{cluster.id}/test", {}),
                       (f"/miner/pools/{lab.id}/slurm", {"cluster": str(cluster.id),
                                                         "partition": "tpu"})):
        assert miner.post(path, data=data).status_code == 400, path
    with app.app_context():
        assert [c.name for c in SlurmCluster.select()] == ["lab"]
        assert Pool.get_by_id(lab.id).slurm_cluster_id is None
    assert not asked(listening)


def test_a_renter_may_not(app, client, accounts, api, listening):
    cluster = make_cluster(app, rest_url=f"unix://{listening.getsockname()}")
    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/account/tokens")
    assert client.get("/miner/nodes").status_code == 403
    for path in ("/miner/slurm-clusters", f"/miner/slurm-clusters/{cluster.id}",
                 f"/miner/slurm-clusters/{cluster.id}/delete",
                 f"/miner/slurm-clusters/{cluster.id}/test"):
        assert client.post(path, data={**cluster_form(name="x"), "csrf_token": token}
                           ).status_code == 403, path
    assert api("rene", "GET", "/slurm-clusters").status_code == 403
    assert api("rene", "GET", f"/slurm-clusters/{cluster.id}").status_code == 403
    assert api("rene", "POST", "/slurm-clusters", json={"name": "x", "rest_url": UNIX}
               ).status_code == 403
    assert api("rene", "PATCH", f"/slurm-clusters/{cluster.id}", json={"name": "x"}
               ).status_code == 403
    assert api("rene", "DELETE", f"/slurm-clusters/{cluster.id}").status_code == 403
    assert api("rene", "PATCH", "/pools/1", json={"slurm": None}).status_code == 403
    assert "slurm" not in api("rene", "GET", "/pools").json[0]
    with app.app_context():
        assert [c.name for c in SlurmCluster.select()] == ["lab"]
    assert not asked(listening)


# --- the API --------------------------------------------------------------------------------


def test_the_api_never_answers_the_token(app, api):
    created = api("mina", "POST", "/slurm-clusters", json={
        "name": "lab", "rest_url": "https://slurm.lab:6820", "user": "alice", "token": SECRET})
    assert created.status_code == 201, created.json
    CLUSTER.validate(created.json, "")
    cluster_id = created.json["id"]
    assert created.json["has_token"] is True and created.json["pools"] == []
    changed = api("mina", "PATCH", f"/slurm-clusters/{cluster_id}",
                  json={"host_root": "/srv/{node}"})
    assert changed.status_code == 200 and changed.json["host_root"] == "/srv/{node}"
    answers = [created, changed, api("mina", "GET", "/slurm-clusters"),
               api("mina", "GET", f"/slurm-clusters/{cluster_id}")]
    for answer in answers:
        assert "SECRET-SIGNATURE" not in answer.get_data(as_text=True)
    with app.app_context():
        assert SlurmCluster.get_by_id(cluster_id).token == SECRET
    assert api("mina", "GET", "/slurm-clusters/999").status_code == 404


def test_the_api_refuses_with_fields(app, api):
    bad = api("mina", "POST", "/slurm-clusters", json={"name": "lab", "rest_url": UNIX,
                                                        "host_root": "/srv/{address}"})
    assert bad.status_code == 409 and "host_root" in bad.json["error"]["fields"]
    bad = api("mina", "POST", "/slurm-clusters", json={"name": "lab",
                                                        "rest_url": "https://a:b@h:1"})
    assert bad.status_code == 400  # the document's pattern refuses it first
    assert api("mina", "POST", "/slurm-clusters", json={"name": "lab", "rest_url": UNIX}
               ).status_code == 201
    taken = api("mina", "POST", "/slurm-clusters", json={"name": "lab", "rest_url": UNIX})
    assert taken.status_code == 409 and "name" in taken.json["error"]["fields"]


@pytest.mark.slurm
def test_the_pools_api_maps_and_clears_a_partition(app, api, live):
    cluster = live
    with app.app_context():
        lab = create_pool("Lab-A")
    mapped = api("mina", "PATCH", f"/pools/{lab.id}",
                 json={"slurm": {"cluster": "lab", "partition": "tpu"}})
    assert mapped.status_code == 200, mapped.json
    assert mapped.json["slurm"] == {"cluster": "lab", "partition": "tpu"}
    POOL.validate(mapped.json, "")
    assert api("mina", "GET", "/slurm-clusters").json[0]["pools"] == ["Lab-A"]
    refused = api("mina", "POST", "/pools", json={
        "name": "Lab-B", "slurm": {"cluster": "lab", "partition": "tpu"}})
    assert refused.status_code == 409 and "slurm.partition" in refused.json["error"]["fields"]
    unknown = api("mina", "PATCH", f"/pools/{lab.id}",
                  json={"slurm": {"cluster": "nope", "partition": "tpu"}})
    assert unknown.status_code == 409 and "slurm.cluster" in unknown.json["error"]["fields"]
    default = api("mina", "PATCH", "/pools/1", json={"slurm": {"cluster": "lab",
                                                               "partition": "debug"}})
    assert default.status_code == 409 and "slurm.cluster" in default.json["error"]["fields"]
    in_use = api("mina", "DELETE", f"/slurm-clusters/{cluster.id}")
    assert in_use.status_code == 409 and "Lab-A" in in_use.json["error"]["message"]
    cleared = api("mina", "PATCH", f"/pools/{lab.id}", json={"slurm": None})
    assert cleared.status_code == 200 and cleared.json["slurm"] is None
    with app.app_context():
        assert Pool.select().where(Pool.name == "Lab-B").count() == 0
    assert api("mina", "DELETE", f"/slurm-clusters/{cluster.id}").status_code == 204


def test_a_renter_is_offered_a_slurm_pool_as_any_pool(app, accounts):
    """A Slurm pool is open to the groups bound to it, as any pool: Slurm runs its tasks
    (scheduler.slurm_jobs)."""
    cluster = make_cluster(app)
    with app.app_context():
        renter = accounts["renter"]
        lab = create_pool("Lab-A")
        set_pool_slurm(lab, cluster, "tpu", offered=["tpu"])
        assert open_pool(renter, "Lab-A") is None  # not bound to the renter's group yet
        group = Group.create(name="lab")
        Membership.create(user=renter, group=group)
        PoolGroup.create(pool=lab, group=group)
        assert open_pool(renter, "Lab-A").slurm_cluster_id == cluster.id
        assert "Lab-A" in {view.pool.name for view in open_pools(renter)}


def test_a_clusters_node_count_follows_the_node_tables_refresh(app, miner):
    cluster = make_cluster(app)
    with app.app_context():
        Node.create(name="lab-node1", url="unix:///box.sock", source="slurm",
                    slurm_cluster=cluster)
    count = f'<span id="cluster-nodes-{cluster.id}"'
    page = miner.get("/miner/nodes").get_data(as_text=True)
    assert page.count(count) == 1 and f'{count}>1</span>' in page
    poll = miner.get("/miner/nodes", headers={"HX-Request": "true", "HX-Target": "node-table"}
                     ).get_data(as_text=True)
    assert f'{count} hx-swap-oob="true">1</span>' in poll and "<html" not in poll


def test_a_manual_node_may_not_be_a_slurm_node_with_the_hosts_own_devices(app):
    """One machine listed twice would give each chip out twice; Slurm nodes with a host root
    of their own (a cluster on one host) may share a Podman."""
    from portal.nodes import NodeError, add_node

    cluster = make_cluster(app)
    with app.app_context():
        for name, root in (("lab-node1", "/"), ("lab-node2", "/srv/node2")):
            Node.create(name=name, url=f"tcp://{name}:1", source="slurm", host_root=root,
                        slurm_cluster=cluster)
        with pytest.raises(NodeError, match="already exists"):
            add_node("box", "tcp://lab-node1:1")
        assert add_node("box", "tcp://lab-node2:1").url == "tcp://lab-node2:1"
