"""The JSON API: who may call what, JSON errors, body checks, nodes, and the OpenAPI document."""

import json
import logging

import pytest

from portal.api.openapi import openapi_path
from portal.api.registry import OPERATIONS
from portal.api.schema import Array, Boolean, Integer, Map, Object, SchemaError, String
from portal.models import ApiToken, Group, Membership, Node, NodeChip, Pool
from portal.tokens import create_token
from portal.users import set_active
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

PROTECTED = ["/api/v1/me", "/api/v1/tokens", "/api/v1/nodes", "/api/v1/nodes/1"]


@pytest.fixture
def tokens(app, accounts):
    """A token for each of mina (miner) and rene (renter): {role: token}."""
    with app.app_context():
        return {role: create_token(user, "test")[1] for role, user in accounts.items()}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and response.json["error"]["code"] == code
    assert response.json["error"]["message"]


@pytest.fixture
def nodes(app):
    """Two nodes: gpu-1 (default pool, 2 chips) and tpu-1 (pool "lab", 3 chips)."""
    with app.app_context():
        lab = Pool.create(name="lab")
        gpu = Node.create(name="gpu-1", url="unix:///run/a.sock", source="local", ready=True,
                          reason="", cpu_millis=8000, memory_mib=16384,
                          labels=json.dumps({"zone": "a"}))
        tpu = Node.create(name="tpu-1", url="ssh://root@tpu/run/podman/podman.sock", pool=lab,
                          cordoned=True)
        for index in (1, 0):
            NodeChip.create(node=gpu, kind="nvidia.com/gpu", index=index,
                            device=f"nvidia.com/gpu={index}")
        for index in range(3):
            NodeChip.create(node=tpu, kind="sophgo.com/bm1684x", index=index,
                            device=f"/dev/bm-sophon{index}")
        return {"gpu": gpu.id, "tpu": tpu.id}


# --- who may call what -------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED)
def test_no_credentials_is_401(client, accounts, path):
    assert_error(client.get(path), 401, "unauthorized")


@pytest.mark.parametrize("header", ["Bearer hg_not-a-token", "Bearer ", "Basic bWluYTpwdw==",
                                    "hg_no-scheme"])
def test_a_bad_authorization_header_is_401(client, tokens, header):
    assert_error(client.get("/api/v1/me", headers={"Authorization": header}), 401,
                 "invalid_token")


def test_a_bearer_header_wins_over_the_session(client, tokens):
    login(client, "miner", "mina", PASSWORD)
    assert client.get("/api/v1/me").json["name"] == "mina"
    assert client.get("/api/v1/me", headers=bearer(tokens["renter"])).json["name"] == "rene"
    assert_error(client.get("/api/v1/me", headers=bearer("hg_wrong")), 401, "invalid_token")


@pytest.mark.parametrize("path", ["/api/v1/nodes", "/api/v1/nodes/1"])
def test_a_renter_gets_403_on_miner_endpoints(client, tokens, nodes, path):
    assert_error(client.get(path, headers=bearer(tokens["renter"])), 403, "forbidden")
    login(client, "renter", "rene", PASSWORD)
    assert_error(client.get(path), 403, "forbidden")


def test_session_and_token_both_work(client, tokens, nodes):
    assert client.get("/api/v1/nodes", headers=bearer(tokens["miner"])).status_code == 200
    login(client, "miner", "mina", PASSWORD)
    assert client.get("/api/v1/nodes").status_code == 200


def test_a_disabled_users_token_is_401(app, client, accounts, tokens):
    with app.app_context():
        set_active(accounts["renter"], False)
    assert_error(client.get("/api/v1/me", headers=bearer(tokens["renter"])), 401,
                 "invalid_token")


def test_me(app, client, accounts, tokens):
    with app.app_context():
        for name in ("lab-b", "lab-a"):
            Membership.create(user=accounts["renter"], group=Group.create(name=name))
    response = client.get("/api/v1/me", headers=bearer(tokens["renter"]))
    assert response.json == {"id": accounts["renter"].id, "name": "rene",
                             "display_name": "Rene Renter", "role": "renter",
                             "groups": ["lab-a", "lab-b"], "locale": None}


# --- CSRF: sessions need it for changes, tokens do not -----------------------------------


def token_count(app):
    with app.app_context():
        return ApiToken.select().count()


def test_a_token_changes_things_without_csrf(app, client, accounts, tokens):
    with app.app_context():
        row, _token = create_token(accounts["renter"], "to revoke")
    response = client.delete(f"/api/v1/tokens/{row.id}", headers=bearer(tokens["renter"]))
    assert response.status_code == 204 and response.data == b""
    assert token_count(app) == 2


def test_a_session_change_needs_the_csrf_header(app, client, accounts):
    with app.app_context():
        row, _token = create_token(accounts["renter"], "keep")
    login(client, "renter", "rene", PASSWORD)
    assert_error(client.delete(f"/api/v1/tokens/{row.id}"), 400, "csrf")
    assert_error(client.post("/api/v1/tokens", json={"name": "x"}), 400, "csrf")
    assert_error(client.post("/api/v1/tokens", json={"name": "x"},
                             headers={"X-CSRFToken": "forged"}), 400, "csrf")
    assert token_count(app) == 1
    header = {"X-CSRFToken": csrf_token(client, "/account/tokens")}
    created = client.post("/api/v1/tokens", json={"name": "from htmx"}, headers=header)
    assert created.status_code == 201 and created.json["token"]["name"] == "from htmx"
    assert client.get("/api/v1/me", headers=bearer(created.json["secret"])).status_code == 200
    assert client.delete(f"/api/v1/tokens/{row.id}", headers=header).status_code == 204


def test_a_token_cannot_make_tokens(app, client, tokens):
    response = client.post("/api/v1/tokens", json={"name": "x"}, headers=bearer(tokens["miner"]))
    assert_error(response, 403, "session_required")
    assert token_count(app) == 2


def test_another_users_token_is_404(app, client, accounts, tokens):
    with app.app_context():
        row, token = create_token(accounts["miner"], "mina's")
    assert_error(client.delete(f"/api/v1/tokens/{row.id}", headers=bearer(tokens["renter"])),
                 404, "not_found")
    listed = client.get("/api/v1/tokens", headers=bearer(tokens["renter"])).json
    assert [t["name"] for t in listed] == ["test"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200


def test_tokens_never_reach_the_log(app, client, accounts, caplog):
    caplog.set_level(logging.DEBUG)  # peewee logs every query with its parameters at DEBUG
    with app.app_context():
        _row, token = create_token(accounts["renter"], "logged?")
    client.get("/api/v1/me", headers=bearer(token))
    client.get("/api/v1/me", headers=bearer(token + "x"))
    login(client, "renter", "rene", PASSWORD)
    page = client.post("/account/tokens", data={
        "name": "page", "csrf_token": csrf_token(client, "/account/tokens")})
    shown = page.get_data(as_text=True).split("<code>")[1].split("</code>")[0]
    header = {"X-CSRFToken": csrf_token(client, "/account/tokens")}
    secret = client.post("/api/v1/tokens", json={"name": "api"}, headers=header).json["secret"]
    client.get("/api/v1/me", headers=bearer(shown))
    assert "api_tokens" in caplog.text  # the capture sees the queries...
    for value in (token, shown, secret):
        assert value.startswith("hg_") and value not in caplog.text  # ...but no token


# --- errors are JSON ---------------------------------------------------------------------


def test_errors_under_api_are_json(client, tokens):
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(client.get("/api/other"), 404, "not_found")
    assert_error(client.get("/api/v1/nodes/999", headers=bearer(tokens["miner"])), 404,
                 "not_found")
    response = client.put("/api/v1/me", headers=bearer(tokens["miner"]))
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET"}


def test_errors_elsewhere_stay_html(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and "text/html" in response.content_type


# --- request bodies ----------------------------------------------------------------------


@pytest.fixture
def session_post(client, accounts):
    """POST /api/v1/tokens as rene's session, with the CSRF header."""
    login(client, "renter", "rene", PASSWORD)
    header = {"X-CSRFToken": csrf_token(client, "/account/tokens")}

    def post(**kwargs):
        return client.post("/api/v1/tokens", headers=header, **kwargs)

    return post


@pytest.mark.parametrize("kwargs,message", [
    ({"data": "name=x"}, "must be JSON"),
    ({"data": "{not json", "content_type": "application/json"}, "not valid JSON"),
    ({"json": ["x"]}, "must be a JSON object"),
    ({"data": "null", "content_type": "application/json"}, "must be a JSON object"),
    ({"json": {}}, "Missing field 'name'"),
    ({"json": {"name": "x", "admin": True}}, "Unknown field 'admin'"),
    ({"json": {"name": 7}}, "'name' must be a string"),
    ({"json": {"name": ""}}, "at least 1 character long"),
    ({"json": {"name": "x" * 65}}, "at most 64 characters"),
    ({"json": {"name": " \n "}}, "control characters"),
        ({"json": {"name": "abc\u202etxt.exe"}}, "text-direction overrides"),
])
def test_bad_bodies_are_400_and_nothing_is_saved(app, session_post, kwargs, message):
    response = session_post(**kwargs)
    assert_error(response, 400, "invalid_body")
    assert message in response.json["error"]["message"]
    assert token_count(app) == 0


def test_an_oversized_body_is_413(app, session_post):
    assert_error(session_post(json={"name": "x" * 100_000}), 413, "request_entity_too_large")
    assert token_count(app) == 0


def test_schema_types_are_strict():
    checks = [
        (Integer(), True), (Integer(), 1.5), (Integer(), 1e300), (Integer(), "1"),
        (Integer(minimum=1), 0), (Integer(maximum=9), 9.0 + 1),
        (String(pattern="[a-z]+"), "a1"), (String(enum=("x",)), "y"),
        (Array(Integer(), min_items=1), []), (Map(Integer(), keys=String(max_length=1)), {"ab": 1}),
        (Map(Integer(), reserved=("R",)), {"R": 1}),
        (Integer(maximum=9), 10), (Boolean(), 1), (String(), None), (Array(Integer()), [1, "2"]),
        (Array(Integer(), max_items=1), [1, 2]), (Map(Integer()), {"a": "b"}),
        (Object({"a": Object({"b": Integer()})}), {"a": {"c": 1}}),
    ]
    for schema, value in checks:
        with pytest.raises(SchemaError):
            schema.validate(value, "f")
    assert Integer(nullable=True).validate(None, "f") is None
    assert Integer().validate(32.0, "f") == 32 and type(Integer().validate(32.0, "f")) is int
    assert Map(Integer()).validate({"a": 1}, "f") == {"a": 1}
    with pytest.raises(SchemaError, match=r"'f\[1\]' must be an integer"):
        Array(Integer()).validate([1, "2"], "f")
    with pytest.raises(SchemaError, match=r"Unknown field 'f.a.c'"):
        Object({"a": Object({"b": Integer()})}).validate({"a": {"c": 1}}, "f")


# --- nodes -------------------------------------------------------------------------------


def test_nodes_list_and_one(client, tokens, nodes):
    listed = client.get("/api/v1/nodes", headers=bearer(tokens["miner"])).json
    assert [n["name"] for n in listed] == ["gpu-1", "tpu-1"]
    gpu, tpu = listed
    assert gpu["pool"] is None and tpu["pool"] == "lab"
    assert gpu["labels"] == {"zone": "a"} and tpu["labels"] == {}
    assert gpu["chips"] == [{"kind": "nvidia.com/gpu", "index": i, "device": f"nvidia.com/gpu={i}",
                             "present": True}
                            for i in (0, 1)]
    assert [c["device"] for c in tpu["chips"]] == [f"/dev/bm-sophon{i}" for i in range(3)]
    assert (gpu["ready"], gpu["cpu_millis"], gpu["memory_mib"], tpu["cordoned"]) == (
        True, 8000, 16384, True)
    one = client.get(f"/api/v1/nodes/{nodes['tpu']}", headers=bearer(tokens["miner"])).json
    assert one == tpu


def test_a_node_in_the_default_pool_row_shows_null(app, client, tokens, nodes):
    with app.app_context():
        default = Pool.get(Pool.is_default == True)  # noqa: E712 (peewee expression)
        Node.update(pool=default).where(Node.id == nodes["gpu"]).execute()
    one = client.get(f"/api/v1/nodes/{nodes['gpu']}", headers=bearer(tokens["miner"])).json
    assert one["pool"] is None


def test_listing_nodes_costs_the_same_queries_for_more_nodes(app, client, tokens, nodes, caplog):
    def queries():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            assert client.get("/api/v1/nodes", headers=bearer(tokens["miner"])).status_code == 200
        return len([r for r in caplog.records if r.name == "peewee"])

    queries()  # the first use of a token also records last_used_at
    few = queries()
    with app.app_context():
        for n in range(4):
            node = Node.create(name=f"more-{n}", url=f"tcp://10.0.0.{n}:8888")
            NodeChip.create(node=node, kind="nvidia.com/gpu", index=0, device="/dev/nvidia0")
    assert len(client.get("/api/v1/nodes", headers=bearer(tokens["miner"])).json) == 6
    assert queries() == few


# --- the OpenAPI document ----------------------------------------------------------------


def undocumented(app, doc):
    """Every (path, method) served under /api/v1/ that the document does not describe."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        described = doc["paths"].get(openapi_path(rule.rule), {})
        missing += [(rule.rule, method) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
                    if method.lower() not in described]
    return missing


def test_every_api_route_is_in_the_document(app, client):
    doc = client.get("/api/v1/openapi.json").json  # public: no sign-in
    assert undocumented(app, doc) == []
    assert "/api/v1/nodes/{node_id}" in doc["paths"]


def test_the_coverage_check_sees_a_route_added_behind_the_registrys_back(app, client):
    app.add_url_rule("/api/v1/rogue", "rogue", lambda: "", methods=["POST"])
    doc = client.get("/api/v1/openapi.json").json
    assert undocumented(app, doc) == [("/api/v1/rogue", "POST")]


def test_the_document_is_well_formed(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["cookie"]["type"] == "apiKey" and schemes["cookie"]["in"] == "cookie"
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert len({op["operationId"] for op in operations}) == len(operations) == len(OPERATIONS)
    for op in operations:
        assert op["summary"] and "default" in op["responses"]
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes)
    nodes = doc["paths"]["/api/v1/nodes"]["get"]
    assert nodes["x-hourglass-role"] == "miner"
    assert nodes["security"] == [{"bearer": []}, {"cookie": []}]
    assert doc["paths"]["/api/v1/tokens"]["post"]["security"] == [{"cookie": []}]
    text = json.dumps(doc)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]):
        assert ref in doc["components"]["schemas"], ref


def test_responses_match_their_declared_schemas(client, tokens, nodes):
    """What the views send and what the document says agree, field by field."""
    checked = 0
    for op in OPERATIONS:
        if (op.method != "GET" or op.public or op.role == "renter"
                or "<" in op.rule.replace("<int:node_id>", "")):
            continue  # one object of another kind: checked in that kind's test file
        path = op.rule.replace("<int:node_id>", str(nodes["tpu"]))
        response = client.get(path, headers=bearer(tokens["miner"]))
        assert response.status_code == op.status, path
        op.response.validate(response.json, "")  # raises on a missing, extra or mistyped field
        checked += 1
    assert checked >= 4
