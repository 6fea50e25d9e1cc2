"""The JSON twins of the miner's nodes, custom resources, specs and pools, and what renters see.

Node and NodeChip rows stand for what discovery found; everything else goes
through the real API, rules and SQLite database, with real API tokens.
"""

import logging

import pytest

from portal import settings
from portal.api.pools import POOL
from portal.api.resources import RESOURCE
from portal.api.specs import SPEC
from portal.models import (
    CustomResource,
    Group,
    Membership,
    Node,
    NodeChip,
    Pool,
    PoolGroup,
    ResourceSpec,
    SpecResource,
)
from portal.signals import nodes_changed
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

BM1684X = "sophgo.com/bm1684x"
TPU = "TPU 1684X"
TABLES = (CustomResource, ResourceSpec, SpecResource, Pool, PoolGroup, Node)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    return response.json["error"]


def add_node(name, cores, gb, chips=0, **fields):
    """A node as discovery leaves it, with ``chips`` BM1684X chips."""
    node = Node.create(name=name, url=f"unix:///run/{name}.sock", cpu_millis=cores * 1000,
                       memory_mib=gb * 1024, ready=True, reason="", **fields)
    for index in range(chips):
        NodeChip.create(node=node, kind=BM1684X, index=index, device=f"/dev/bm-sophon{index}")
    return node


@pytest.fixture
def world(app, accounts):
    """Two nodes (tpu-1: 8 cores, 16 GB, 6 chips; cpu-1: 4 cores, 8 GB, the local node), the
    group "lab" with the renter rita in it (rene is in no group), and a token for each user."""
    with app.app_context():
        tpu = add_node("tpu-1", 8, 16, chips=6)
        cpu = add_node("cpu-1", 4, 8, source="local")
        lab = Group.create(name="lab")
        rita = create_user("rita", "renter", PASSWORD)
        Membership.create(user=rita, group=lab)
        users = {"miner": accounts["miner"], "rene": accounts["renter"], "rita": rita}
        tokens = {who: create_token(user, "test")[1] for who, user in users.items()}
    return {"tpu": tpu.id, "cpu": cpu.id, "headers": {w: bearer(t) for w, t in tokens.items()}}


@pytest.fixture
def api(client, world):
    """``api(who, method, path, json=...)``: a request under /api/v1 with who's token."""

    def call(who, method, path, **kwargs):
        return client.open(f"/api/v1{path}", method=method, headers=world["headers"][who],
                           **kwargs)

    return call


@pytest.fixture
def made(api, world):
    """A custom resource, a spec "small" (1 core, 1 GB, 1 chip) and a pool "lab pool" bound
    to "lab" holding tpu-1, all made through the API: {"resource", "spec", "pool"} ids."""
    resource = api("miner", "POST", "/resources", json={"name": TPU, "kind": BM1684X})
    spec = api("miner", "POST", "/specs", json={
        "name": "small", "cpu": "1", "memory_gb": "1", "price": "0.5", "resources": {TPU: 1}})
    pool = api("miner", "POST", "/pools", json={"name": "lab pool", "groups": ["lab"],
                                                "nodes": [world["tpu"]]})
    assert (resource.status_code, spec.status_code, pool.status_code) == (201, 201, 201)
    return {"resource": resource.json["id"], "spec": spec.json["id"], "pool": pool.json["id"]}


def snapshot(app):
    with app.app_context():
        return [list(model.select().order_by(*model._meta.get_primary_keys()).dicts())
                for model in TABLES]


def names(items):
    return [item["name"] for item in items]


# --- the miner builds it all with a token, no CSRF; renters see what is theirs ------------


def test_miner_makes_resource_spec_and_pool_and_renters_see_theirs(app, api, world):
    resource = api("miner", "POST", "/resources", json={
        "name": TPU, "kind": BM1684X, "description": "Sophgo SC7 chips"})
    assert resource.status_code == 201
    assert resource.json == {"id": resource.json["id"], "name": TPU, "kind": BM1684X,
                             "description": "Sophgo SC7 chips"}
    spec = api("miner", "POST", "/specs", json={
        "cpu": "4", "memory_gb": "2", "price": "1.5", "resources": {TPU: 2}})
    assert spec.status_code == 201, spec.json
    spec_id = spec.json["id"]
    assert spec.json == {
        "id": spec_id, "name": "4 CPU-2 GB-2 TPU 1684X", "cpu_millis": 4000, "memory_mib": 2048,
        "price_per_hour": 1_500_000, "price_per_hour_text": "1.50 UNC", "resources": {TPU: 2},
        "enabled": True, "fits_somewhere": True, "pools": [{"id": 1, "name": "default"}]}
    pool = api("miner", "POST", "/pools", json={
        "name": "lab pool", "description": "<i>ours</i>", "groups": ["lab"],
        "nodes": [world["tpu"]]})
    assert pool.status_code == 201, pool.json
    pool_id = pool.json["id"]
    assert pool.json == {
        "id": pool_id, "name": "lab pool", "description": "<i>ours</i>", "is_default": False,
        "capacity": {"cpu": 8000, "memory": 16384, BM1684X: 6},
        "specs": [{"id": spec_id, "name": "4 CPU-2 GB-2 TPU 1684X"}], "groups": ["lab"],
        "nodes": [{"id": world["tpu"], "name": "tpu-1"}],
        "limits": {"max_chips_per_user": None, "max_replicas_per_user": None,
                   "cull_idle_minutes": None, "max_run_minutes": None}, "slurm": None}
    listed = api("miner", "GET", "/specs").json
    assert listed[0]["pools"] == [{"id": pool_id, "name": "lab pool"}]
    default = api("miner", "GET", "/pools/1").json
    assert default["specs"] == [] and default["nodes"] == [{"id": world["cpu"], "name": "cpu-1"}]

    # rene is in no group: only the default pool, where the spec does not fit
    assert api("rene", "GET", "/specs").json == []
    assert_error(api("rene", "GET", f"/specs/{spec_id}"), 404, "not_found")
    assert_error(api("rene", "GET", f"/pools/{pool_id}"), 404, "not_found")
    assert [p["name"] for p in api("rene", "GET", "/pools").json] == ["default"]
    # rita is in "lab": the spec, in the pool she may use; no groups or nodes for renters
    seen = api("rita", "GET", "/specs").json
    assert names(seen) == ["4 CPU-2 GB-2 TPU 1684X"]
    assert seen[0]["pools"] == [{"id": pool_id, "name": "lab pool"}]
    assert api("rita", "GET", f"/specs/{spec_id}").json == seen[0]
    pools = api("rita", "GET", "/pools").json
    assert names(pools) == ["default", "lab pool"]
    miner_only = {"groups", "nodes", "slurm"}
    assert pools[1] == {key: pool.json[key] for key in pool.json if key not in miner_only}
    assert api("rita", "GET", f"/pools/{pool_id}").json == pools[1]
    # every signed-in user reads the custom resources: specs name them
    assert api("rene", "GET", "/resources").json == [resource.json]


def test_a_disabled_spec_is_hidden_from_renters_but_not_the_miner(api, made):
    assert api("rita", "GET", f"/pools/{made['pool']}").json["specs"] == [
        {"id": made["spec"], "name": "small"}]
    changed = api("miner", "PATCH", f"/specs/{made['spec']}", json={"enabled": False})
    assert changed.status_code == 200 and changed.json["enabled"] is False
    assert_error(api("rita", "GET", f"/specs/{made['spec']}"), 404, "not_found")
    assert api("rita", "GET", f"/pools/{made['pool']}").json["specs"] == []
    assert api("miner", "GET", f"/pools/{made['pool']}").json["specs"] == [
        {"id": made["spec"], "name": "small"}]


def test_responses_match_their_schemas_for_both_roles(api, made):
    for who in ("miner", "rita"):
        for path, schema in [("/resources", RESOURCE), ("/specs", SPEC), ("/pools", POOL)]:
            listed = api(who, "GET", path).json
            assert listed, (who, path)
            for item in listed:
                schema.validate(item, "")
        SPEC.validate(api(who, "GET", f"/specs/{made['spec']}").json, "")
        POOL.validate(api(who, "GET", f"/pools/{made['pool']}").json, "")


def test_the_price_text_uses_the_miners_currency(app, api, made):
    with app.app_context():
        settings.put("currency", "CNY")
    assert api("miner", "GET", f"/specs/{made['spec']}").json["price_per_hour_text"] == "0.50 CNY"


def test_names_with_html_and_unicode_are_data(api, made):
    name = "<script>alert(1)</script> 芯片 ✓ &amp;"
    created = api("miner", "POST", "/resources", json={"name": name, "kind": "nvidia.com/gpu",
                                                       "description": "<b>bold</b>"})
    assert created.status_code == 201 and created.content_type == "application/json"
    assert created.json["name"] == name and created.json["description"] == "<b>bold</b>"
    assert name in names(api("rene", "GET", "/resources").json)
    spec = api("miner", "PATCH", f"/specs/{made['spec']}", json={"name": "小 <em>spec</em>"})
    assert spec.json["name"] == "小 <em>spec</em>"
    pool = api("miner", "PATCH", f"/pools/{made['pool']}", json={"name": "池 <u>"})
    assert pool.json["name"] == "池 <u>"


# --- changes -------------------------------------------------------------------------------


def test_the_miner_changes_and_deletes_resources_specs_and_pools(app, api, world, made):
    renamed = api("miner", "PATCH", f"/resources/{made['resource']}",
                  json={"name": "TPU", "description": "new"})
    assert renamed.json == {"id": made["resource"], "name": "TPU", "kind": BM1684X,
                            "description": "new"}
    assert api("miner", "PATCH", f"/resources/{made['resource']}", json={}).json == renamed.json
    spec = api("miner", "PATCH", f"/specs/{made['spec']}", json={"price": "2", "cpu": "0.5"})
    assert (spec.json["name"], spec.json["cpu_millis"], spec.json["memory_mib"]) == (
        "small", 500, 1024)
    assert (spec.json["price_per_hour"], spec.json["resources"]) == (2_000_000, {"TPU": 1})
    spec = api("miner", "PATCH", f"/specs/{made['spec']}", json={"resources": {}})
    assert spec.json["resources"] == {} and set(names(spec.json["pools"])) == {
        "default", "lab pool"}
    pool = api("miner", "PATCH", f"/pools/{made['pool']}",
               json={"description": "d", "groups": [], "nodes": [world["cpu"]]})
    assert (pool.json["name"], pool.json["description"], pool.json["groups"]) == (
        "lab pool", "d", [])
    assert names(pool.json["nodes"]) == ["cpu-1", "tpu-1"]
    assert names(api("rita", "GET", "/pools").json) == ["default"]  # no group bound: nobody
    back = api("miner", "PATCH", "/pools/1", json={"nodes": [world["tpu"]], "groups": ["lab"]})
    assert names(back.json["nodes"]) == ["tpu-1"] and back.json["groups"] == ["lab"]
    assert names(api("rene", "GET", "/pools").json) == []  # the default pool is lab's now

    assert api("miner", "DELETE", f"/pools/{made['pool']}").status_code == 204
    assert api("miner", "DELETE", f"/specs/{made['spec']}").status_code == 204
    assert api("miner", "DELETE", f"/resources/{made['resource']}").status_code == 204
    with app.app_context():
        assert Node.get_by_id(world["cpu"]).pool is None  # back in the default pool
        assert [m.select().count() for m in (CustomResource, ResourceSpec, SpecResource)] == [
            0, 0, 0]
        assert [p.name for p in Pool.select()] == ["default"]


def test_a_spec_no_node_holds_any_more_can_still_be_disabled(app, api, made):
    with app.app_context():
        NodeChip.delete().execute()
    refused = api("miner", "PATCH", f"/specs/{made['spec']}", json={"price": "3"})
    assert "resources.TPU 1684X" in assert_error(refused, 409, "conflict")["fields"]
    changed = api("miner", "PATCH", f"/specs/{made['spec']}", json={"enabled": False})
    assert changed.status_code == 200
    assert (changed.json["enabled"], changed.json["fits_somewhere"]) == (False, False)


def test_a_used_resource_is_409_naming_the_spec(app, api, made):
    before = snapshot(app)
    error = assert_error(api("miner", "DELETE", f"/resources/{made['resource']}"), 409,
                         "conflict")
    assert "small" in error["message"]
    assert snapshot(app) == before


def test_nodes_are_added_changed_and_removed(app, api, world):
    heard = []

    def listen(sender):
        heard.append(sender)

    nodes_changed.connect(listen)
    try:
        added = api("miner", "POST", "/nodes", json={
            "name": "gpu-2", "url": "ssh://root@gpu-2/run/podman/podman.sock"})
        assert added.status_code == 201 and len(heard) == 1
        assert (added.json["name"], added.json["source"], added.json["chips"]) == (
            "gpu-2", "manual", [])
        node = added.json["id"]
        changed = api("miner", "PATCH", f"/nodes/{node}",
                      json={"labels": {"zone": "lab-a", "gpu": ""}, "draining": True})
        assert changed.json["labels"] == {"gpu": "", "zone": "lab-a"}
        assert (changed.json["draining"], changed.json["cordoned"]) == (True, True)
        assert len(heard) == 1  # labels and draining need no new discovery
        undrained = api("miner", "PATCH", f"/nodes/{node}",
                        json={"draining": False, "cordoned": False, "enabled": False})
        assert (undrained.json["draining"], undrained.json["cordoned"]) == (False, False)
        assert undrained.json["enabled"] is False and len(heard) == 2
        assert api("miner", "DELETE", f"/nodes/{node}").status_code == 204
        assert len(heard) == 3
        assert_error(api("miner", "GET", f"/nodes/{node}"), 404, "not_found")
    finally:
        nodes_changed.disconnect(listen)


# --- who may call what ---------------------------------------------------------------------

WRITES = [
    ("POST", "/nodes", {"name": "n2", "url": "tcp://10.0.0.9:8888"}),
    ("PATCH", "/nodes/{tpu}", {"cordoned": True}),
    ("DELETE", "/nodes/{tpu}", None),
    ("POST", "/resources", {"name": "GPU", "kind": "nvidia.com/gpu"}),
    ("PATCH", "/resources/{resource}", {"name": "x"}),
    ("DELETE", "/resources/{resource}", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1"}),
    ("PATCH", "/specs/{spec}", {"price": "9"}),
    ("DELETE", "/specs/{spec}", None),
    ("POST", "/pools", {"name": "mine"}),
    ("PATCH", "/pools/{pool}", {"groups": []}),
    ("DELETE", "/pools/{pool}", None),
]


def test_renters_cannot_write(app, client, api, world, made):
    before = snapshot(app)
    for method, path, body in WRITES:
        path = path.format(**world, **made)
        for who in ("rene", "rita"):
            assert_error(api(who, method, path, json=body), 403, "forbidden")
    login(client, "renter", "rene", PASSWORD)
    header = {"X-CSRFToken": csrf_token(client, "/account/tokens")}
    for method, path, body in WRITES:
        path = f"/api/v1{path.format(**world, **made)}"
        assert_error(client.open(path, method=method, json=body, headers=header), 403,
                     "forbidden")
    assert snapshot(app) == before


def test_reading_needs_a_sign_in(client, world):
    for path in ["/resources", "/specs", "/pools", "/specs/1", "/pools/1"]:
        assert_error(client.get(f"/api/v1{path}"), 401, "unauthorized")


def test_session_writes_need_the_csrf_header(app, client, world):
    login(client, "miner", "mina", PASSWORD)
    body = {"name": TPU, "kind": BM1684X}
    assert_error(client.post("/api/v1/resources", json=body), 400, "csrf")
    assert_error(client.post("/api/v1/resources", json=body, headers={"X-CSRFToken": "forged"}),
                 400, "csrf")
    assert_error(client.patch(f"/api/v1/nodes/{world['tpu']}", json={"cordoned": True}), 400,
                 "csrf")
    with app.app_context():
        assert CustomResource.select().count() == 0
        assert not Node.get_by_id(world["tpu"]).cordoned
    header = {"X-CSRFToken": csrf_token(client, "/miner/resources")}
    assert client.post("/api/v1/resources", json=body, headers=header).status_code == 201
    assert client.get("/api/v1/resources").json[0]["name"] == TPU  # reading needs no header


# --- bad input: a clear 4xx, and the database as it was ------------------------------------

BIG = 2**64
BAD = [
    # (method, path, body, status, code, field)
    ("POST", "/resources", {}, 400, "invalid_body", None),
    ("POST", "/resources", {"name": "GPU"}, 400, "invalid_body", None),
    ("POST", "/resources", {"name": 5, "kind": BM1684X}, 400, "invalid_body", None),
    ("POST", "/resources", {"name": "G", "kind": BM1684X, "id": 9}, 400, "invalid_body", None),
    ("POST", "/resources", ["GPU"], 400, "invalid_body", None),
    ("POST", "/resources", "GPU", 400, "invalid_body", None),
    ("POST", "/resources", {"name": " ", "kind": BM1684X}, 400, "invalid_body", "name"),
    ("POST", "/resources", {"name": "x" * 65, "kind": BM1684X}, 400, "invalid_body", "name"),
    ("POST", "/resources", {"name": "a\nb", "kind": BM1684X}, 400, "invalid_body", "name"),
    ("POST", "/resources", {"name": "a\u202eb", "kind": BM1684X}, 400, "invalid_body", "name"),
    ("POST", "/resources", {"name": TPU, "kind": BM1684X}, 409, "conflict", "name"),
    ("POST", "/resources", {"name": "G", "kind": "cpu; rm -rf /"}, 409, "conflict", "kind"),
    ("POST", "/resources", {"name": "G", "kind": BM1684X, "description": "d" * 257}, 400,
     "invalid_body", "description"),
    ("PATCH", "/resources/{resource}", {"name": ""}, 400, "invalid_body", "name"),
    ("PATCH", "/resources/{resource}", {"name": None}, 400, "invalid_body", None),
    ("PATCH", "/resources/{resource}", {"kind": "nvidia.com/gpu"}, 400, "invalid_body", None),
    ("PATCH", "/resources/999", {"name": "x"}, 404, "not_found", None),
    ("PATCH", f"/resources/{BIG}", {"name": "x"}, 404, "not_found", None),
    ("DELETE", "/resources/0", None, 404, "not_found", None),

    ("POST", "/specs", {"cpu": "1", "memory_gb": "1"}, 400, "invalid_body", None),
    ("POST", "/specs", {"cpu": 1, "memory_gb": "1", "price": "1"}, 400, "invalid_body", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": 1.5}, 400, "invalid_body", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "enabled": "yes"}, 400,
     "invalid_body", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": {TPU: 1.5}},
     400, "invalid_body", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": {TPU: "1"}},
     400, "invalid_body", None),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": [TPU]},
     400, "invalid_body", None),
    # The document refuses what is not a number in its form (400); a number it allows that
    # is too large, too fine or fits no node is refused as things are (409).
    *[("POST", "/specs", {"cpu": cpu, "memory_gb": "1", "price": "1"}, 400, "invalid_body",
       "cpu") for cpu in ("0", "-1", "abc", "", "NaN", "1e999999999", "0.0001", str(BIG))],
    *[("POST", "/specs", {"cpu": cpu, "memory_gb": "1", "price": "1"}, 409, "conflict", "cpu")
      for cpu in ("1025", "9")],
    *[("POST", "/specs", {"cpu": "1", "memory_gb": gb, "price": "1"}, 400, "invalid_body",
       "memory_gb") for gb in ("0", "-2", "two", "1e-999999999", str(BIG))],
    *[("POST", "/specs", {"cpu": "1", "memory_gb": gb, "price": "1"}, 409, "conflict",
       "memory_gb") for gb in ("17", "0.1")],
    *[("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": price}, 400, "invalid_body",
       "price") for price in ("0", "-1", "one", "1.0000001", str(BIG), "1e999999999")],
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1000001"}, 409, "conflict",
     "price"),
    *[("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": {TPU: n}},
       400, "invalid_body", f"resources.{TPU}") for n in (-1, 1025, BIG)],
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": {TPU: 7}},
     409, "conflict", f"resources.{TPU}"),
    ("POST", "/specs", {"cpu": "1", "memory_gb": "1", "price": "1", "resources": {"ghost": 1}},
     409, "conflict", "resources.ghost"),
    ("POST", "/specs", {"name": "small", "cpu": "2", "memory_gb": "1", "price": "1"}, 409,
     "conflict", "name"),
    ("POST", "/specs", {"name": "x" * 97, "cpu": "2", "memory_gb": "1", "price": "1"}, 400,
     "invalid_body", "name"),
    ("PATCH", "/specs/{spec}", {"price": "0"}, 400, "invalid_body", "price"),
    ("PATCH", "/specs/{spec}", {"name": "other", "cpu": "100"}, 409, "conflict", "cpu"),
    ("PATCH", "/specs/{spec}", {"enabled": 1}, 400, "invalid_body", "enabled"),
    ("PATCH", "/specs/{spec}", {"resources": {"ghost": 1}, "enabled": False}, 409, "conflict",
     "resources.ghost"),
    ("PATCH", "/specs/{spec}", {"cpu_millis": 1000}, 400, "invalid_body", None),
    ("DELETE", f"/specs/{BIG}", None, 404, "not_found", None),

    ("POST", "/pools", {}, 400, "invalid_body", None),
    ("POST", "/pools", {"name": ""}, 400, "invalid_body", "name"),
    ("POST", "/pools", {"name": "default"}, 409, "conflict", "name"),
    ("POST", "/pools", {"name": "lab pool"}, 409, "conflict", "name"),
    ("POST", "/pools", {"name": "new", "groups": ["nope"]}, 409, "conflict", "groups"),
    ("POST", "/pools", {"name": "new", "groups": "lab"}, 400, "invalid_body", None),
    ("POST", "/pools", {"name": "new", "nodes": [999]}, 409, "conflict", "nodes"),
    ("POST", "/pools", {"name": "new", "nodes": [0]}, 400, "invalid_body", None),
    ("POST", "/pools", {"name": "new", "nodes": [BIG]}, 400, "invalid_body", None),
    ("POST", "/pools", {"name": "new", "nodes": ["1"]}, 400, "invalid_body", None),
    ("POST", "/pools", {"name": "new", "nodes": list(range(1, 1002))}, 400, "invalid_body",
     None),
    ("PATCH", "/pools/1", {"name": "renamed"}, 409, "conflict", "name"),
    ("PATCH", "/pools/{pool}", {"name": "default", "groups": []}, 409, "conflict", "name"),
    ("PATCH", "/pools/{pool}", {"is_default": True}, 400, "invalid_body", None),
    ("DELETE", "/pools/1", None, 409, "conflict", None),

    ("POST", "/nodes", {"name": "bad name!", "url": "tcp://10.0.0.9:8888"}, 400, "invalid_body",
     "name"),
    ("POST", "/nodes", {"name": "n2", "url": "http://10.0.0.9"}, 400, "invalid_body", "url"),
    ("POST", "/nodes", {"name": "n2", "url": "tcp://a b"}, 400, "invalid_body", "url"),
    ("POST", "/nodes", {"name": "tpu-1", "url": "tcp://10.0.0.9:8888"}, 409, "conflict", None),
    ("POST", "/nodes", {"name": "n2"}, 400, "invalid_body", None),
    ("PATCH", "/nodes/{tpu}", {"labels": {"bad key!": "v"}}, 400, "invalid_body", "labels"),
    ("PATCH", "/nodes/{tpu}", {"labels": {"zone": "a\nb=c"}}, 400, "invalid_body",
     "labels.zone"),
    ("PATCH", "/nodes/{tpu}", {"labels": {"zone": "a\n"}}, 400, "invalid_body", "labels.zone"),
    ("PATCH", "/nodes/{tpu}", {"labels": {f"k{n}": "v" for n in range(33)}}, 400,
     "invalid_body", "labels"),
    ("PATCH", "/nodes/{tpu}", {"labels": {"zone": 1}}, 400, "invalid_body", None),
    ("PATCH", "/nodes/{tpu}", {"labels": {"zone": "b"}, "cordoned": "yes"}, 400,
     "invalid_body", None),
    ("PATCH", "/nodes/{tpu}", {"labels": {"zone": "b"}, "draining": True, "cordoned": False},
     409, "conflict", "cordoned"),
    ("PATCH", "/nodes/{tpu}", {"pool": 1}, 400, "invalid_body", None),
    ("PATCH", f"/nodes/{BIG}", {"cordoned": True}, 404, "not_found", None),
    ("DELETE", "/nodes/{cpu}", None, 409, "conflict", None),
]


@pytest.mark.parametrize("kind", ["resources", "specs", "pools", "nodes"])
def test_bad_input_is_refused_and_nothing_is_saved(app, api, world, made, kind):
    """Every case of ``BAD`` for one kind of object, on one database (they all leave it as
    it was, so they cannot disturb each other)."""
    before = snapshot(app)
    cases = [case for case in BAD if case[1].split("/")[1] == kind]
    assert len(cases) > 10
    for method, path, body, status, code, field in cases:
        case = f"{method} {path} {body!r}"[:200]
        response = api("miner", method, path.format(**world, **made), json=body)
        assert response.status_code == status, (case, response.get_data(as_text=True))
        error = response.json["error"]
        assert error["code"] == code and error["message"], (case, error)
        if field:
            assert set(error["fields"]) == {field}, (case, error)
            assert all(error["fields"].values()), (case, error)
        assert snapshot(app) == before, case


def test_every_refused_spec_field_is_reported_at_once(api, made):
    error = assert_error(api("miner", "POST", "/specs", json={
        "cpu": "2000", "memory_gb": "0.1", "price": "1000001"}), 409, "conflict")
    assert set(error["fields"]) == {"cpu", "memory_gb", "price"}


def test_a_draining_node_stays_cordoned_until_it_stops_draining(app, api, world):
    api("miner", "PATCH", f"/nodes/{world['tpu']}", json={"draining": True})
    error = assert_error(api("miner", "PATCH", f"/nodes/{world['tpu']}",
                             json={"cordoned": False}), 409, "conflict")
    assert "draining" in error["fields"]["cordoned"]
    with app.app_context():
        assert Node.get_by_id(world["tpu"]).cordoned


def test_bodies_that_are_not_json_objects(api, world):
    for kwargs in ({"data": "name=x"}, {"data": "{", "content_type": "application/json"},
                   {"data": "null", "content_type": "application/json"}):
        assert_error(api("miner", "POST", "/pools", **kwargs), 400, "invalid_body")
    assert_error(api("miner", "POST", "/pools", json={"name": "x" * 70_000}), 413,
                 "request_entity_too_large")


# --- lists cost a fixed number of queries --------------------------------------------------


@pytest.mark.parametrize("who,path", [("miner", "/resources"), ("miner", "/specs"),
                                      ("rita", "/specs"), ("miner", "/pools"),
                                      ("rita", "/pools")])
def test_lists_cost_the_same_queries_for_more_rows(app, api, made, caplog, who, path):
    def queries():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            assert api(who, "GET", path).status_code == 200
        return len([r for r in caplog.records if r.name == "peewee"])

    queries()  # the first use of a token also records last_used_at
    few = queries()
    for n in range(4):
        with app.app_context():
            node = add_node(f"more-{n}", 8, 16, chips=2)
        api("miner", "POST", "/resources", json={"name": f"R{n}", "kind": BM1684X})
        api("miner", "POST", "/pools", json={"name": f"pool {n}", "groups": ["lab"],
                                             "nodes": [node.id]})
        spec = api("miner", "POST", "/specs", json={
            "cpu": "1", "memory_gb": str(n + 2), "price": "1", "resources": {f"R{n}": 1}})
        assert spec.status_code == 201
    assert len(api(who, "GET", path).json) > 2
    assert queries() == few
