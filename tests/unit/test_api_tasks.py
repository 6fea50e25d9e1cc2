"""The training task API: submit, list, read, stop, run again, delete; who may; bad bodies.

The world (pools, nodes, specs, a second renter) is the one of ``test_tasks``.
"""

import pytest

from portal.api.openapi import openapi_path
from portal.api.registry import OPERATIONS
from portal.api.tasks import TASK, TASK_SUMMARY  # importing registers the routes too
from portal.models import Node, Replica, ReplicaEvent, Subtask, Task, User
from portal.tokens import create_token
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import IMAGE, METACHARACTERS, counts, set_state

world = shared.world  # the fixture: pools, nodes, specs and renters rene and rita

BODY = {"name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "env": {"A": "1"},
        "pool": "default", "subtasks": [{"role": "worker", "spec": "1 TPU", "replicas": 2}]}


@pytest.fixture
def tokens(app, world):
    """API tokens of rene and rita (renters) and mina (miner): {name: headers}."""
    with app.app_context():
        return {user.name: {"Authorization": f"Bearer {create_token(user, 'test')[1]}"}
                for user in User.select()}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code and response.json["error"]["message"]
    return response.json["error"]


def submit(client, headers, **overrides):
    response = client.post("/api/v1/tasks", json={**BODY, **overrides}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json


def test_submit_returns_the_whole_task(client, tokens):
    task = submit(client, tokens["rene"], argv=METACHARACTERS,
                  subtasks=[{"role": "worker", "spec": "1 TPU", "replicas": 2},
                            {"role": "ps", "spec": "1 TPU", "replicas": 1}])
    assert task["argv"] == METACHARACTERS and task["env"] == {"A": "1"}
    assert (task["name"], task["image"], task["pool"], task["state"]) == (
        "train", IMAGE, "default", "pending")
    assert not task["stop_requested"] and task["rerun_of"] is None
    assert task["submitted_at"].endswith("Z")
    assert [(s["role"], s["spec"], s["replicas"], s["state"]) for s in task["subtasks"]] == [
        ("worker", "1 TPU", 2, "pending"), ("ps", "1 TPU", 1, "pending")]
    assert [(r["role"], r["index"], r["state"], r["node"]) for r in task["replicas"]] == [
        ("worker", 0, "pending", None), ("worker", 1, "pending", None), ("ps", 0, "pending", None)]
    assert [(e["state"], e["reason"]) for e in task["replicas"][0]["events"]] == [
        ("pending", "submitted")]
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=tokens["rene"]).json == task


def test_env_is_optional(client, tokens):
    body = {key: value for key, value in BODY.items() if key != "env"}
    assert client.post("/api/v1/tasks", json=body, headers=tokens["rene"]).json["env"] == {}


def test_the_list_holds_only_your_tasks_newest_first(client, tokens):
    first = submit(client, tokens["rene"], name="first")
    second = submit(client, tokens["rene"], name="second")
    submit(client, tokens["rita"], name="rita's")
    listed = client.get("/api/v1/tasks", headers=tokens["rene"]).json
    assert [t["id"] for t in listed] == [second["id"], first["id"]]
    assert "replicas" not in listed[0] and listed[0]["subtasks"][0]["replicas"] == 2


def test_stop_rerun_and_delete(client, app, tokens):
    rene = tokens["rene"]
    task = submit(client, rene)
    url = f"/api/v1/tasks/{task['id']}"
    assert_error(client.post(f"{url}/rerun", headers=rene), 409, "conflict")
    assert_error(client.delete(url, headers=rene), 409, "conflict")
    stopped = client.post(f"{url}/stop", headers=rene).json
    assert stopped["state"] == "stopped" and stopped["stop_requested"]
    assert [(e["state"], e["reason"]) for e in stopped["replicas"][1]["events"]] == [
        ("pending", "submitted"), ("stopped", "stopped by you")]
    assert_error(client.post(f"{url}/stop", headers=rene), 409, "conflict")
    again = client.post(f"{url}/rerun", headers=rene)
    assert again.status_code == 201 and again.json["rerun_of"] == task["id"]
    assert again.json["argv"] == task["argv"] and again.json["state"] == "pending"
    assert client.delete(url, headers=rene).status_code == 204
    assert_error(client.get(url, headers=rene), 404, "not_found")
    with app.app_context():
        assert Task.get_by_id(task["id"]).deleted and counts() == [2, 2, 4, 6]


def test_delete_is_refused_while_a_replica_runs(client, app, tokens):
    task = submit(client, tokens["rene"])
    with app.app_context():
        set_state(task["id"], "running")
    error = assert_error(client.delete(f"/api/v1/tasks/{task['id']}", headers=tokens["rene"]),
                         409, "conflict")
    assert "Stop the task" in error["message"]
    stopping = client.post(f"/api/v1/tasks/{task['id']}/stop", headers=tokens["rene"]).json
    assert (stopping["state"], stopping["stop_requested"]) == ("running", True)


@pytest.mark.parametrize("change, field, status", [
    ({"name": ""}, "name", 400),
    ({"name": "x" * 97}, "name", 400),
    ({"name": "abc\u202etxt.exe"}, "name", 400),
    ({"image": "not an image"}, "image", 400),
    ({"argv": []}, "argv", 400),
    ({"argv": ["x" * 4097]}, "argv[0]", 400),
    ({"argv": ["echo", "a\x00"]}, "argv[1]", 400),
    ({"env": {"HOURGLASS_TASK_ID": "1"}}, "env", 400),
    ({"env": {"a-b": "1"}}, "env", 400),
    ({"env": {"A" * 10_000: "1"}}, "env", 400),
    ({"pool": "nowhere"}, "pool", 409),
    ({"pool": "lab"}, "pool", 409),
    ({"subtasks": []}, "subtasks", 400),
    ({"subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1}] * 9}, "subtasks", 400),
    ({"subtasks": [{"role": "Bad Role", "spec": "1 TPU", "replicas": 1}]}, "subtasks[0].role",
     400),
    ({"subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1}] * 2}, "subtasks[1].role",
     409),
    ({"subtasks": [{"role": "w", "spec": "nope", "replicas": 1}]}, "subtasks[0].spec", 409),
    ({"subtasks": [{"role": "w", "spec": "16 TPU", "replicas": 1}]}, "subtasks[0].spec", 409),
    ({"subtasks": [{"role": "w", "spec": "off", "replicas": 1}]}, "subtasks[0].spec", 409),
    ({"subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 0}]}, "subtasks[0].replicas",
     400),
    ({"subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 65}]}, "subtasks[0].replicas",
     400),
])
def test_refused_values_name_their_field(client, app, tokens, change, field, status):
    """What the document refuses is 400 ``invalid_body``; what it allows but the rules refuse
    as things are (an unknown pool or spec, a role used twice) is 409. Either names the
    field, and nothing is saved."""
    response = client.post("/api/v1/tasks", json={**BODY, **change}, headers=tokens["rene"])
    error = assert_error(response, status, "invalid_body" if status == 400 else "conflict")
    assert field in error["fields"], error
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


@pytest.mark.parametrize("body", [
    {**BODY, "argv": "echo hi"},
    {**BODY, "argv": ["echo", 1]},
    {**BODY, "env": {"A": 1}},
    {**BODY, "env": ["A=1"]},
    {**BODY, "pool": 1},
    {**BODY, "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": "2"}]},
    {**BODY, "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": True}]},
    {**BODY, "subtasks": [{"role": "w", "spec": "1 TPU"}]},
    {**BODY, "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1, "gpu": 1}]},
    {**BODY, "extra": 1},
    {key: value for key, value in BODY.items() if key != "image"},
    ["not", "an", "object"],
])
def test_malformed_bodies_are_400(client, app, tokens, body):
    assert_error(client.post("/api/v1/tasks", json=body, headers=tokens["rene"]), 400,
                 "invalid_body")
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


def task_calls(task_id):
    """Every task endpoint that names a task: (method, path)."""
    url = f"/api/v1/tasks/{task_id}"
    return [("GET", url), ("POST", f"{url}/stop"), ("POST", f"{url}/rerun"), ("DELETE", url)]


def test_another_renter_gets_404_for_every_task_endpoint(client, app, tokens):
    task = submit(client, tokens["rene"])
    with app.app_context():
        set_state(task["id"], "succeeded", exit_code=0)
    for method, path in task_calls(task["id"]) + task_calls(task["id"] + 100):
        assert_error(client.open(path, method=method, headers=tokens["rita"]), 404,
                     "not_found")
    assert client.get("/api/v1/tasks", headers=tokens["rita"]).json == []
    with app.app_context():
        assert counts()[0] == 1 and not Task.get_by_id(task["id"]).deleted


def test_a_miner_gets_403(client, tokens):
    task = submit(client, tokens["rene"])
    assert_error(client.post("/api/v1/tasks", json=BODY, headers=tokens["mina"]), 403,
                 "forbidden")
    assert_error(client.get("/api/v1/tasks", headers=tokens["mina"]), 403, "forbidden")
    for method, path in task_calls(task["id"]):
        assert_error(client.open(path, method=method, headers=tokens["mina"]), 403, "forbidden")


@pytest.mark.usefixtures("world")
def test_no_credentials_is_401(client):
    for method, path in [("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")] + task_calls(1):
        assert_error(client.open(path, method=method), 401, "unauthorized")


@pytest.mark.usefixtures("world")
def test_a_session_needs_the_csrf_header_to_change_anything(client, app):
    login(client, "renter", "rene", PASSWORD)
    assert_error(client.post("/api/v1/tasks", json=BODY), 400, "csrf")
    token = csrf_token(client, "/renter/tasks/new")
    created = client.post("/api/v1/tasks", json=BODY, headers={"X-CSRFToken": token})
    assert created.status_code == 201
    for method, path in task_calls(created.json["id"])[1:]:
        assert_error(client.open(path, method=method), 400, "csrf")
    with app.app_context():
        assert counts()[0] == 1 and not Task.get().stop_requested
    assert client.get(f"/api/v1/tasks/{created.json['id']}").status_code == 200


def test_replica_facts_come_from_what_the_scheduler_wrote(client, app, tokens):
    task = submit(client, tokens["rene"], subtasks=[{"role": "w", "spec": "1 TPU",
                                                      "replicas": 1}])
    with app.app_context():
        replica = Replica.get(Replica.task == task["id"])
        Replica.update(state="succeeded", node=Node.get(Node.name == "box"), exit_code=0,
                       started_ns=1_700_000_000_123_456_789,
                       finished_ns=1_700_000_060_000_000_001).execute()
        ReplicaEvent.create(replica=replica, state="succeeded", reason="exit code 0")
        assert Subtask.select().count() == 1
    got = client.get(f"/api/v1/tasks/{task['id']}", headers=tokens["rene"]).json
    replica = got["replicas"][0]
    assert (got["state"], replica["node"], replica["exit_code"]) == ("succeeded", "box", 0)
    assert (replica["started_ns"], replica["finished_ns"]) == (
        1_700_000_000_123_456_789, 1_700_000_060_000_000_001)
    assert [e["state"] for e in replica["events"]] == ["pending", "succeeded"]


@pytest.mark.usefixtures("world")
def test_the_openapi_document_describes_every_task_endpoint(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    ours = [op for op in OPERATIONS if op.rule.startswith("/api/v1/tasks")]
    assert {(op.rule, op.method) for op in ours} == {
        ("/api/v1/tasks", "GET"), ("/api/v1/tasks", "POST"),
        ("/api/v1/tasks/<int:task_id>", "GET"), ("/api/v1/tasks/<int:task_id>", "DELETE"),
        ("/api/v1/tasks/<int:task_id>/stop", "POST"),
        ("/api/v1/tasks/<int:task_id>/rerun", "POST")}
    for op in ours:
        assert op.method.lower() in paths[openapi_path(op.rule)]


def test_responses_match_their_declared_schemas(client, app, tokens):
    """Every field the document declares is sent, with its type, and nothing else."""
    task = submit(client, tokens["rene"])
    TASK.validate(task, "")
    with app.app_context():
        set_state(task["id"], "failed", exit_code=2, started_ns=1, finished_ns=2)
    TASK.validate(client.get(f"/api/v1/tasks/{task['id']}", headers=tokens["rene"]).json, "")
    for summary in client.get("/api/v1/tasks", headers=tokens["rene"]).json:
        TASK_SUMMARY.validate(summary, "")
    TASK.validate(client.post(f"/api/v1/tasks/{task['id']}/rerun",
                              headers=tokens["rene"]).json, "")
