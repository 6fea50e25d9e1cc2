"""Deleting a row other rows use: 409 naming them, by page and by API, and nothing deleted.

``DELETES`` lists every delete a page or the API offers (a test fails when a route that
deletes is added without being listed), and ``COVERED`` names, for every reference that
holds a deletable row back (``portal.references.holding_references``), the test below
that deletes such a row by page and by API while a real row refers to it (a test fails
when a new one appears untested). Tasks, replicas and nodes are rows as the scheduler and
discovery leave them; charges are written by the ledger's own metering.
"""

import re

import pytest

from portal import ledger, references
from portal.models import (
    Algorithm,
    AlgorithmVersion,
    ApiToken,
    CustomResource,
    Dataset,
    DatasetShare,
    DatasetVersion,
    Group,
    Image,
    LedgerEntry,
    Membership,
    Node,
    Notebook,
    Pool,
    PoolGroup,
    PoolLimit,
    Replica,
    ResourceSpec,
    SlurmCluster,
    SpecResource,
    Subtask,
    Task,
    TaskTemplate,
    Upload,
)
from portal.pools import create_pool, default_pool, move_node
from portal.tokens import create_token
from tests.conftest import PASSWORD, ROOT
from tests.support import csrf_token, login

NS = 1_000_000_000
T0 = 1_795_000_000 * NS

# Every route that deletes, and the model whose row it deletes (None: the row stays,
# hidden from its renter, so nothing can be left pointing at a missing row).
DELETES = {
    "miner.delete_resource_view": CustomResource,
    "api.delete_resource_api": CustomResource,
    "miner.delete_spec_view": ResourceSpec,
    "api.delete_spec_api": ResourceSpec,
    "miner.delete_pool_view": Pool,
    "api.delete_pool_api": Pool,
    "miner.delete_group_view": Group,
    "miner.node_action": Node,  # action "remove"
    "api.remove_node_api": Node,
    "miner.delete_slurm_cluster_view": SlurmCluster,
    "api.delete_slurm_cluster_api": SlurmCluster,
    "account.revoke_token_view": ApiToken,
    "api.revoke_token_api": ApiToken,
    "renter.delete_task_view": None,
    "api.delete_task_api": None,
    "renter.delete_notebook_view": None,
    "api.delete_notebook_api": None,
    "renter.delete_algorithm_view": Algorithm,
    "api.delete_algorithm_api": Algorithm,
    "renter.delete_algorithm_version_view": AlgorithmVersion,
    "api.delete_algorithm_version": AlgorithmVersion,
    "renter.delete_dataset_view": Dataset,
    "api.delete_dataset_api": Dataset,
    "renter.delete_dataset_version_view": DatasetVersion,
    "api.delete_dataset_version": DatasetVersion,
    "api.unshare_dataset_api": DatasetShare,
    "renter.delete_image_view": Image,
    "api.delete_renter_image": Image,
    "renter.delete_template_view": TaskTemplate,
    "api.delete_template_api": TaskTemplate,
    "api.delete_upload": Upload,
    "renter.notebook_files_delete": None,  # a file of a notebook's folder, not a row
}

# (referencing model, foreign key) holding a deletable row back -> the test deleting such a
# row by page and by API while one refers to it
COVERED = {
    ("SpecResource", "resource"): "test_a_resource_a_spec_uses_is_409",
    ("Subtask", "spec"): "test_a_spec_a_task_uses_is_409",
    ("LedgerEntry", "spec"): "test_a_spec_a_charge_uses_is_409",
    ("Task", "pool"): "test_a_pool_with_work_is_409_and_one_with_history_moves_it",
    ("PoolGroup", "group"): "test_a_group_a_pool_is_bound_to_is_409",
    ("Pool", "slurm_cluster"): "test_a_slurm_cluster_a_pool_maps_is_409",
}


@pytest.fixture
def world(app, accounts):
    """The node n1, the custom resource TPU, the spec "small" (1 core, 1 GB, one TPU), the
    pool Lab-A bound to the group lab (rene in it), and the miner's API token."""
    with app.app_context():
        node = Node.create(name="n1", url="unix:///run/n1.sock", cpu_millis=8000,
                           memory_mib=16384, ready=True)
        tpu = CustomResource.create(name="TPU", kind="sophgo.com/bm1684x")
        spec = ResourceSpec.create(name="small", cpu_millis=1000, memory_mib=1024,
                                   price_per_hour=3_600_000)
        SpecResource.create(spec=spec, resource=tpu, count=1)
        lab = create_pool("Lab-A")
        group = Group.create(name="lab")
        PoolGroup.create(pool=lab, group=group)
        Membership.create(user=accounts["renter"], group=group)
        token = create_token(accounts["miner"], "test")[1]
    return {"node": node, "tpu": tpu, "spec": spec, "lab": lab, "group": group,
            "renter": accounts["renter"], "api": {"Authorization": f"Bearer {token}"}}


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def run(renter, spec, pool, state="pending", node=None):
    """A task of ``renter`` with one replica of ``spec``; an ended one ran a minute on
    ``node`` and is charged by the ledger's metering."""
    task = Task.create(user=renter, name="t", image="busybox", pool=pool, state=state)
    subtask = Subtask.create(task=task, role="main", spec=spec, count=1)
    ended = state in ("succeeded", "failed")
    Replica.create(task=task, subtask=subtask, index=0, state=state, node=node,
                   started_ns=T0 if ended else None, finished_ns=T0 + 60 * NS if ended else None,
                   price_per_hour=spec.price_per_hour)
    if ended:
        assert ledger.meter() == 1
    return task


def page_delete(client, path):
    return client.post(path, data={"csrf_token": csrf_token(client, "/miner/specs")})


def refused_by_page(response, *words):
    """A 409 page whose error message holds ``words`` (as the page escapes them)."""
    html = response.get_data(as_text=True)
    assert response.status_code == 409, html[:300]
    flash = re.search(r'<p class="flash error"[^>]*>([^<]*)</p>', html)
    assert flash, "no error shown"
    for word in words:
        assert word.replace("'", "&#39;") in flash.group(1)
    return flash.group(1)


def refused_by_api(response, *words):
    """A 409 ``conflict`` in the API's error shape, whose message holds ``words``."""
    assert response.status_code == 409, response.get_data(as_text=True)
    error = response.json["error"]
    assert error["code"] == "conflict"
    for word in words:
        assert word in error["message"]
    return error["message"]


def exists(app, row):
    with app.app_context():
        return type(row).get_or_none(type(row).id == row.id) is not None


# --- every reference that holds a row back, by page and by API ----------------------------


def test_a_resource_a_spec_uses_is_409(app, client, miner, world):
    tpu = world["tpu"]
    message = "'TPU' is used by 1 spec (small). Take it out of those specs first."
    refused_by_page(page_delete(miner, f"/miner/resources/{tpu.id}/delete"), message)
    refused_by_api(client.delete(f"/api/v1/resources/{tpu.id}", headers=world["api"]), message)
    assert exists(app, tpu)


def test_a_spec_a_task_uses_is_409(app, client, miner, world):
    spec = world["spec"]
    with app.app_context():
        run(world["renter"], spec, world["lab"])
    message = ("'small' is used by 1 task. Tasks and charges keep their spec for billing: "
               "disable it instead.")
    refused_by_page(page_delete(miner, f"/miner/specs/{spec.id}/delete"), message)
    refused_by_api(client.delete(f"/api/v1/specs/{spec.id}", headers=world["api"]), message)
    with app.app_context():  # its resources, deleted first in the same transaction, are back
        assert SpecResource.select().where(SpecResource.spec == spec.id).count() == 1
    assert exists(app, spec)


def test_a_spec_a_charge_uses_is_409(app, client, miner, world):
    spec = world["spec"]
    with app.app_context():
        run(world["renter"], spec, world["lab"])
        run(world["renter"], spec, world["lab"], state="succeeded", node=world["node"])
        assert LedgerEntry.select().where(LedgerEntry.spec == spec.id).count() == 1
    words = ("'small' is used by 2 tasks and 1 ledger row.",)
    refused_by_page(page_delete(miner, f"/miner/specs/{spec.id}/delete"), *words)
    refused_by_api(client.delete(f"/api/v1/specs/{spec.id}", headers=world["api"]), *words)
    assert exists(app, spec)


def test_a_slurm_cluster_a_pool_maps_is_409(app, client, miner, world):
    with app.app_context():
        cluster = SlurmCluster.create(name="lab", rest_url="unix:///run/slurmrestd.sock")
        node = Node.create(name="node1", url="ssh://root@node1/run/podman/podman.sock",
                           source="slurm", slurm_cluster=cluster, pool=world["lab"])
        Pool.update(slurm_cluster=cluster, partition="tpu").where(
            Pool.id == world["lab"].id).execute()
    message = ("'lab' is used by 1 pool (Lab-A). Make those pools Podman pools first (their "
               "Slurm partition).")
    refused_by_page(page_delete(miner, f"/miner/slurm-clusters/{cluster.id}/delete"), message)
    refused_by_api(client.delete(f"/api/v1/slurm-clusters/{cluster.id}",
                                 headers=world["api"]), message)
    assert exists(app, cluster) and exists(app, node)
    with app.app_context():
        Pool.update(slurm_cluster=None, partition="").execute()
    assert page_delete(miner, f"/miner/slurm-clusters/{cluster.id}/delete").status_code == 303
    assert not exists(app, cluster) and not exists(app, node)  # its nodes go with it


def test_a_group_a_pool_is_bound_to_is_409(app, miner, world):
    group = world["group"]
    with app.app_context():  # without its binding the default pool would serve every renter
        PoolGroup.create(pool=default_pool(), group=group)
    refused_by_page(page_delete(miner, f"/miner/groups/{group.id}/delete"),
                    "'lab' is used by 2 pools (Lab-A, default). Unbind it from those pools "
                    "first.")
    assert exists(app, group)
    with app.app_context():
        assert PoolGroup.select().count() == 2 and Membership.select().count() == 1
        PoolGroup.delete().execute()
    assert page_delete(miner, f"/miner/groups/{group.id}/delete").status_code == 303
    assert not exists(app, group)
    with app.app_context():
        assert Membership.select().count() == 0  # its members go with it


def test_a_pool_with_work_is_409_and_one_with_history_moves_it(app, client, miner, world):
    lab, api = world["lab"], world["api"]
    with app.app_context():
        running = run(world["renter"], world["spec"], lab, state="running")
    words = ("Pool 'Lab-A' still has 1 task(s) waiting or running",)
    refused_by_page(page_delete(miner, f"/miner/pools/{lab.id}/delete"), *words)
    refused_by_api(client.delete(f"/api/v1/pools/{lab.id}", headers=api), *words)
    assert exists(app, lab)

    with app.app_context():
        Replica.update(state="succeeded").execute()
        other = create_pool("Lab-B")
        for pool in (lab, other):
            run(world["renter"], world["spec"], pool, state="succeeded", node=world["node"])
            Notebook.create(user=world["renter"], name="nb", image="busybox", pool=pool)
            PoolLimit.create(pool=pool, max_chips_per_user=1)
        move_node(world["node"], lab)
        default = default_pool().id
    assert page_delete(miner, f"/miner/pools/{lab.id}/delete").status_code == 303
    assert client.delete(f"/api/v1/pools/{other.id}", headers=api).status_code == 204
    with app.app_context():  # what used them stays, in the default pool
        assert [p.name for p in Pool.select()] == ["default"]
        assert Task.get_by_id(running.id).pool_id == default
        assert {t.pool_id for t in Task.select()} == {default}
        assert Node.get_by_id(world["node"].id).pool_id is None
        assert {n.pool_id for n in Notebook.select()} == {None}
        assert PoolGroup.select().count() == PoolLimit.select().count() == 0


def test_a_node_lets_its_replicas_and_charges_go(app, client, miner, world):
    """Nothing holds a node back: its chips go with it, its replicas and charges stay."""
    with app.app_context():
        run(world["renter"], world["spec"], world["lab"], state="succeeded", node=world["node"])
        second = Node.create(name="n2", url="unix:///run/n2.sock")
        run(world["renter"], world["spec"], world["lab"], state="failed", node=second)
    node = world["node"]
    assert page_delete(miner, f"/miner/nodes/{node.id}/remove").status_code == 303
    assert client.delete(f"/api/v1/nodes/{second.id}", headers=world["api"]).status_code == 204
    with app.app_context():
        assert Node.select().count() == 0
        assert [(e.node_id, e.spec_id) for e in LedgerEntry.select()
                .where(LedgerEntry.kind == "charge")] == [(None, world["spec"].id)] * 2
        assert {r.node_id for r in Replica.select()} == {None}


# --- the database's refusal, when a row arrived after the count ---------------------------


@pytest.fixture
def late_rows(monkeypatch):
    """The first count of each delete finds nothing, as if the rows arrived just after it:
    the database's RESTRICT refuses, and the rows are counted again."""
    real, calls = references.uses_of, []

    def uses_of(row):
        calls.append(row)
        return [] if len(calls) % 2 else real(row)

    monkeypatch.setattr(references, "uses_of", uses_of)
    return calls


def test_the_databases_refusal_is_the_same_409(app, client, miner, world, late_rows):
    spec, tpu = world["spec"], world["tpu"]
    with app.app_context():
        run(world["renter"], spec, world["lab"], state="succeeded", node=world["node"])
    words = ("'small' is used by 1 task and 1 ledger row.",)
    refused_by_page(page_delete(miner, f"/miner/specs/{spec.id}/delete"), *words)
    refused_by_api(client.delete(f"/api/v1/specs/{spec.id}", headers=world["api"]), *words)
    refused_by_api(client.delete(f"/api/v1/resources/{tpu.id}", headers=world["api"]),
                   "'TPU' is used by 1 spec (small).")
    assert len(late_rows) == 6  # each delete counted twice: the database did refuse
    assert exists(app, spec) and exists(app, tpu)
    with app.app_context():
        assert SpecResource.select().count() == 1


def test_a_refusal_no_count_explains_still_says_409(app, client, world, monkeypatch):
    monkeypatch.setattr(references, "uses_of", lambda row: [])
    spec = world["spec"]
    with app.app_context():
        run(world["renter"], spec, world["lab"])
    refused_by_api(client.delete(f"/api/v1/specs/{spec.id}", headers=world["api"]),
                   "'small' is still in use, so it was not deleted: reload the page.")
    assert exists(app, spec)


# --- the lists above are complete ---------------------------------------------------------


def test_every_route_that_deletes_is_listed(app):
    found = {rule.endpoint for rule in app.url_map.iter_rules()
             if "DELETE" in rule.methods or rule.rule.endswith(("/delete", "/revoke"))}
    assert found | {"miner.node_action"} == set(DELETES)


def test_every_reference_holding_a_deletable_row_back_is_tested():
    deletable = {model for model in DELETES.values() if model}
    holding = {(fk.model.__name__, fk.name) for model in deletable
               for fk in references.holding_references(model)}
    assert holding == set(COVERED)
    assert all(name in globals() for name in COVERED.values())
    # What the database deletes along with a deletable row holds nothing back itself (the
    # count looks one step deep).
    for model in deletable:
        for fk in model._meta.backrefs:
            if fk.on_delete == "CASCADE" and (fk.model, fk.name) not in references.ALSO_HOLDS:
                assert references.holding_references(fk.model) == [], fk
    # Every delete of one row goes through the one helper.
    calls = [str(path.relative_to(ROOT)) for path in (ROOT / "portal").rglob("*.py")
             if "delete_instance(" in path.read_text() and path.name != "references.py"]
    assert calls == []
