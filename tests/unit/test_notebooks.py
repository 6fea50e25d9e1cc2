"""Notebooks: the rules (``portal.notebooks``), their folders (``portal.notebook_folders``,
``portal.storage``), the renter's notebook pages and the JSON API; who may; the Jupyter
token is never shown.

The world (pools, nodes, specs, renters rene and rita) is the one of ``test_tasks``;
replica states the scheduler would write are set directly where a test needs them.
"""

import os

import pytest
from werkzeug.exceptions import NotFound

from portal import notebook_folders, notebook_views, notebooks, storage, versions
from portal.models import Notebook, Replica, ReplicaEvent, ResourceSpec, Subtask, Task, User
from portal.notebooks import NotebookError
from portal.specs import set_spec_enabled
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import JUPYTER_IMAGE, PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_algorithms import CODE, code_version
from tests.unit.test_datasets import data_version
from tests.unit.test_tasks import IMAGE, set_state

world = shared.world  # the fixture: pools, nodes, specs and renters rene and rita


@pytest.fixture
def ctx(app, world):
    with app.app_context():
        yield app


@pytest.fixture
def signals(app):
    """Every tasks_changed signal sent, as its keyword arguments."""
    from portal.signals import tasks_changed

    received = []

    def receive(sender, **extra):
        received.append(extra)

    tasks_changed.connect(receive, weak=False)
    yield received
    tasks_changed.disconnect(receive)


def renter(name="rene"):
    return User.get(User.name == name)


def make(user=None, **overrides):
    """A valid notebook of rene's in the default pool (spec "1 TPU"), started."""
    params = {"name": "lab", "image": IMAGE, "spec": "1 TPU", "pool": "default"}
    params.update(overrides)
    return notebooks.create_notebook(user or renter(), **params)


def errors_of(call, *args, **kwargs):
    with pytest.raises(NotebookError) as info:
        call(*args, **kwargs)
    return info.value.errors


def counts():
    return [model.select().count() for model in (Notebook, Task, Subtask, Replica)]


def data(app):
    return app.config["DATA_ROOT"]


def folder(app, user, kind, name):
    return storage.user_folder(data(app), user.id, kind, name)


def owner(path):
    info = os.stat(path)
    return info.st_uid, info.st_gid


# --- folders -----------------------------------------------------------------------------


def test_user_folders_stay_inside_the_users_folder(tmp_path):
    assert storage.user_folder(tmp_path, 7, "notebooks", "12") == \
        tmp_path / "users" / "7" / "notebooks" / "12"
    for name in ("..", ".", ".hidden", "a/b", "../x", "", "x" * 65, "a b", "名字", None,
                 "a\x00b", "-x"):
        with pytest.raises(ValueError):
            storage.user_folder(tmp_path, 7, "notebooks", name)
    for user_id in (0, -1, True, "7"):
        with pytest.raises(ValueError):
            storage.user_folder(tmp_path, user_id, "notebooks", "x")
    with pytest.raises(ValueError):
        storage.user_folder(tmp_path, 7, "../etc", "x")


def test_ensure_folder_gives_it_to_the_containers_user_and_refuses_links(tmp_path):
    made = storage.ensure_folder(tmp_path / "a" / "b")
    assert made.is_dir()
    if os.geteuid() == 0:
        assert owner(made) == (1000, 1000)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "link", tmp_path / "file"):
        with pytest.raises(FileExistsError):
            storage.ensure_folder(path)


# --- the rules ---------------------------------------------------------------------------


def test_create_saves_the_notebook_makes_its_folder_and_starts_a_run(ctx, signals):
    notebook = make(count=2)
    assert (notebook.name, notebook.count, notebook.algorithm_version,
            notebook.dataset_version) == ("lab", 2, None, None)
    own = folder(ctx, renter(), "notebooks", str(notebook.id))
    assert own.is_dir() and owner(own) == (1000, 1000)
    run = Task.get(Task.notebook == notebook)
    assert (run.kind, run.name, run.image, run.argv, run.env, run.state) == (
        "notebook", "lab", IMAGE, '["jupyter-lab"]', "{}", "pending")
    assert len(run.secret) >= 40 and run.secret not in run.env
    subtasks = list(Subtask.select().where(Subtask.task == run).order_by(Subtask.id))
    assert [(s.role, s.count, s.spec.name) for s in subtasks] == [
        ("lab-0", 1, "1 TPU"), ("lab-1", 1, "1 TPU")]
    replicas = list(Replica.select().where(Replica.task == run))
    assert [(r.state, r.index) for r in replicas] == [("pending", 0), ("pending", 0)]
    assert [e.reason for e in ReplicaEvent.select()] == ["submitted", "submitted"]
    assert signals == [{"task_id": run.id}]
    assert notebook_folders.mounts(data(ctx), notebook) == [(str(own), "/code", False)]


def test_two_runs_get_different_tokens(ctx):
    first = notebooks.active_run(make())
    second = notebooks.active_run(make(name="other"))
    assert first.secret != second.secret


def test_code_is_a_copy_of_the_algorithm_version_and_the_dataset_is_read_only(ctx):
    user = renter()
    code, dataset = code_version(user), data_version(user)
    notebook = make(algorithm_version=code.id, dataset_version=dataset.id)
    own = folder(ctx, user, "notebooks", str(notebook.id))
    assert (own / "hello.txt").read_bytes() == CODE["hello.txt"] and owner(own) == (1000, 1000)
    assert notebook_folders.mounts(data(ctx), notebook) == [
        (str(own), "/code", False), (str(versions.folder(dataset)), "/dataset", True)]
    (own / "hello.txt").write_text("edited")  # the working copy, not the version
    assert (versions.folder(code) / "hello.txt").read_bytes() == CODE["hello.txt"]


def test_another_renters_versions_are_not_yours(ctx):
    rita = renter("rita")
    assert errors_of(make, algorithm_version=code_version(rita).id,
                     dataset_version=data_version(rita).id) == {
        "algorithm_version": "Choose a version of one of your algorithms.",
        "dataset_version": "Choose a version of a dataset you may use."}


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Enter a name."),
    ("name", "x" * 97, "At most 96 characters."),
    ("name", "a\nb", "control characters"),
    ("image", "not an image", "Not an image reference"),
    ("image", "", "Enter an image"),
    ("spec", "", "Choose a spec."),
    ("spec", "nope", "There is no spec 'nope' you may use."),
    ("spec", "off", "There is no spec 'off' you may use."),
    ("spec", "16 TPU", "There is no spec '16 TPU' you may use."),  # only in pool lab
    ("pool", "lab", "There is no pool 'lab' open to you."),
    ("count", 0, "Subtasks: a whole number from 1 to 8."),
    ("count", 9, "Subtasks: a whole number from 1 to 8."),
    ("count", "two", "Subtasks: a whole number from 1 to 8."),
    ("count", True, "Subtasks: a whole number from 1 to 8."),
    ("algorithm_version", "../../etc", "Choose a version of one of your algorithms."),
    ("algorithm_version", 999999, "Choose a version of one of your algorithms."),
    ("dataset_version", "../../../etc", "Choose a version of a dataset you may use."),
    ("dataset_version", 999999, "Choose a version of a dataset you may use."),
])
def test_bad_values_are_refused_and_nothing_is_saved(ctx, signals, field, value, message):
    errors = errors_of(make, **{field: value})
    assert list(errors) == [field] and message in errors[field]
    assert counts() == [0, 0, 0, 0] and signals == []
    assert not (storage.user_folder(data(ctx), renter().id, "notebooks", "x").parent
                .exists())  # no folder was made either


def test_every_bad_field_is_reported_at_once(ctx):
    errors = errors_of(make, name="", image="bad image", spec="nope", pool="nowhere",
                       count=0, algorithm_version="..", dataset_version="none")
    assert set(errors) == {"name", "image", "spec", "pool", "count", "algorithm_version",
                           "dataset_version"}


def test_a_start_needs_the_minimum_period_of_balance(ctx, signals):
    poor = create_user("pat", "renter", PASSWORD)
    errors = errors_of(make, poor)
    assert list(errors) == [None] and "does not cover" in errors[None]
    assert counts() == [0, 0, 0, 0]
    notebook = make(poor, start=False)  # saved without a run: starting is what costs
    assert counts() == [1, 0, 0, 0] and notebook_views.notebook_view(notebook).state is None
    assert "does not cover" in errors_of(notebooks.start_notebook, notebook)[None]
    assert signals == []


def test_stop_and_start_again_is_a_new_run_and_hides_the_old_one(ctx, signals):
    notebook = make()
    first = notebooks.active_run(notebook)
    assert errors_of(notebooks.start_notebook, notebook) == {
        None: "This notebook is running already."}
    notebooks.stop_notebook(notebook)  # it never left pending: stopped at once
    assert Task.get_by_id(first.id).state == "stopped" and notebooks.active_run(notebook) is None
    assert errors_of(notebooks.stop_notebook, notebook) == {None: "This notebook is not running."}
    second = notebooks.start_notebook(notebook)
    assert second.id != first.id and second.secret != first.secret
    assert Task.get_by_id(first.id).deleted and not second.deleted
    view = notebook_views.notebook_view(notebook)
    assert view.run.task.id == second.id and view.state == "pending" and view.running
    assert [s["task_id"] for s in signals if "task_id" in s][-1] == second.id


def test_a_started_run_is_stopped_by_the_scheduler(ctx):
    notebook = make()
    run = notebooks.active_run(notebook)
    set_state(run, "running")
    notebooks.stop_notebook(notebook)
    run = Task.get_by_id(run.id)
    assert run.stop_requested and notebook_views.notebook_view(notebook).stopping
    assert errors_of(notebooks.start_notebook, notebook) == {
        None: "This notebook is running already."}


def test_a_start_is_checked_again(ctx):
    notebook = make(start=False)
    set_spec_enabled(ResourceSpec.get(ResourceSpec.name == "1 TPU"), False)
    assert "There is no spec '1 TPU' you may use." in errors_of(
        notebooks.start_notebook, notebook)["spec"]


def test_delete_is_refused_while_it_runs_and_keeps_the_rows(ctx, signals):
    notebook = make()
    run = notebooks.active_run(notebook)
    set_state(run, "running")
    assert "Stop the notebook" in errors_of(notebooks.delete_notebook, notebook)[None]
    set_state(run, "stopped")
    notebooks.delete_notebook(notebook)
    assert Notebook.get_by_id(notebook.id).deleted and Task.get_by_id(run.id).deleted
    assert counts() == [1, 1, 1, 1]  # rows stay for billing
    assert folder(ctx, renter(), "notebooks", str(notebook.id)).is_dir()  # and the files
    assert signals[-1] == {"notebook_id": notebook.id}
    with pytest.raises(NotFound):
        notebooks.get_notebook_or_404(renter(), notebook.id)
    assert notebook_views.notebook_views(renter()) == []


def test_another_renters_notebook_is_not_found(ctx):
    notebook = make()
    assert notebooks.get_notebook_or_404(renter(), notebook.id).id == notebook.id
    for user, notebook_id in ((renter("rita"), notebook.id), (renter(), notebook.id + 1),
                              (renter(), 0), (renter(), 2**63)):
        with pytest.raises(NotFound):
            notebooks.get_notebook_or_404(user, notebook_id)


def test_notebook_runs_are_not_training_tasks(ctx):
    make()
    assert shared.task_views.task_views(renter()) == []


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def rene(client, world):
    login(client, "renter", "rene", PASSWORD)
    return client


def text(response):
    return response.get_data(as_text=True)


def post(client, path, **fields):
    return client.post(path, data={"csrf_token": csrf_token(client, "/renter/notebooks/new"),
                                   **fields})


FORM = {"name": "my lab", "image": IMAGE, "spec": "1 TPU", "pool": "default", "count": "1",
        "algorithm_version": "", "dataset_version": "", "start": "y"}


def make_in(app, **overrides):
    with app.app_context():
        return make(**overrides).id


def test_the_menu_entry_opens_the_notebook_list(rene, app):
    page = text(rene.get("/renter/notebooks"))
    assert "not built yet" not in page and "No notebooks yet." in page
    assert 'href="/renter/notebooks"' in page  # the menu links the page itself
    notebook_id = make_in(app, name="<b>bold</b> 笔记")
    page = text(rene.get("/renter/notebooks"))
    assert f'data-notebook="{notebook_id}"' in page and 'data-state="pending"' in page
    assert "&lt;b&gt;bold&lt;/b&gt; 笔记" in page and "<b>bold</b>" not in page
    assert 'hx-trigger="every 2s"' in page and 'hx-select="#notebook-table"' in page


def test_the_form_offers_the_jupyter_image_specs_and_versions(rene, app):
    with app.app_context():
        dataset, code = data_version(renter()), code_version(renter())
    page = text(rene.get("/renter/notebooks/new"))
    assert f'value="{JUPYTER_IMAGE}"' in page
    assert '<option value="1 TPU">' in page
    assert '<option value="16 TPU">' not in page and '<option value="off">' not in page
    assert '<optgroup label="digits">' in page and '<optgroup label="mnist">' in page
    assert f'<option value="{dataset.id}">v1' in page and f'<option value="{code.id}">v1' in page


def test_submitting_the_form_creates_and_starts_the_notebook(rene, app):
    response = post(rene, "/renter/notebooks", **FORM)
    assert response.status_code == 303
    with app.app_context():
        notebook = Notebook.get()
        run = notebooks.active_run(notebook)
    assert response.headers["Location"].endswith(f"/renter/notebooks/{notebook.id}")
    page = text(rene.get(response.headers["Location"]))
    assert "Created notebook" in page and "my lab" in page
    assert 'data-state="pending"' in page and "lab-0" in page
    assert "Waiting for the scheduler to place it." in page
    assert 'id="open-notebook" disabled' in page and "notebook proxy" in page
    assert 'id="stop-notebook"' in page and 'id="start-notebook"' not in page
    assert 'id="delete-notebook"' not in page and 'hx-select="#notebook-live"' in page
    assert run.secret not in page


def test_a_waiting_notebook_shows_why(rene, app):
    notebook_id = make_in(app)
    with app.app_context():
        Task.update(reason="balance exhausted").where(Task.notebook == notebook_id).execute()
    assert "balance exhausted" in text(rene.get(f"/renter/notebooks/{notebook_id}"))


def test_bad_form_input_is_shown_next_to_its_field(rene, app):
    response = post(rene, "/renter/notebooks", **{**FORM, "count": "9",
                                                   "algorithm_version": "999"})
    page = text(response)
    assert response.status_code == 400
    assert "Subtasks: a whole number from 1 to 8." in page
    assert "Choose a version of one of your algorithms." in page
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


def test_without_start_the_notebook_waits_for_its_start_button(rene, app):
    fields = {key: value for key, value in FORM.items() if key != "start"}
    location = post(rene, "/renter/notebooks", **fields).headers["Location"]
    page = text(rene.get(location))
    assert "not started" in page and 'id="start-notebook"' in page
    with app.app_context():
        assert counts() == [1, 0, 0, 0]


def test_start_stop_and_delete_from_the_page(rene, app):
    notebook_id = make_in(app, start=False)
    url = f"/renter/notebooks/{notebook_id}"
    assert post(rene, f"{url}/start").status_code == 303
    assert 'data-state="pending"' in text(rene.get(url))
    assert post(rene, f"{url}/start").status_code == 303
    assert "running already" in text(rene.get(url))
    post(rene, f"{url}/stop")
    page = text(rene.get(url))
    assert "Your files stay." in page and 'data-state="stopped"' in page
    assert 'hx-confirm="Delete lab? Its records and machine-time stay' in page  # asks first
    assert post(rene, f"{url}/delete").headers["Location"].endswith("/renter/notebooks")
    assert rene.get(url).status_code == 404
    with app.app_context():
        assert Notebook.get_by_id(notebook_id).deleted


def notebook_urls(notebook_id):
    """Every page and action of a notebook, in the portal and the API: (method, path)."""
    return [("GET", f"/renter/notebooks/{notebook_id}"),
            ("POST", f"/renter/notebooks/{notebook_id}/start"),
            ("POST", f"/renter/notebooks/{notebook_id}/stop"),
            ("POST", f"/renter/notebooks/{notebook_id}/delete"),
            ("GET", f"/api/v1/notebooks/{notebook_id}"),
            ("POST", f"/api/v1/notebooks/{notebook_id}/start"),
            ("POST", f"/api/v1/notebooks/{notebook_id}/stop"),
            ("DELETE", f"/api/v1/notebooks/{notebook_id}")]


def test_another_renter_gets_404_for_every_notebook_url(client, world, app):
    notebook_id = make_in(app, start=False)
    login(client, "renter", "rita", PASSWORD)
    token = csrf_token(client, "/renter/notebooks/new")
    for method, path in notebook_urls(notebook_id):
        response = client.open(path, method=method, headers={"X-CSRFToken": token},
                               data={"csrf_token": token} if path.startswith("/renter") else None)
        assert response.status_code == 404, (method, path)
    assert f'data-notebook="{notebook_id}"' not in text(client.get("/renter/notebooks"))
    assert client.get("/api/v1/notebooks").json == []
    with app.app_context():
        assert counts() == [1, 0, 0, 0] and not Notebook.get_by_id(notebook_id).deleted


def test_every_post_needs_the_csrf_token(rene, app):
    notebook_id = make_in(app, start=False)
    posts = [("/renter/notebooks", FORM)] + [
        (path, {}) for method, path in notebook_urls(notebook_id)
        if method == "POST" and path.startswith("/renter")]
    for path, fields in posts:
        for token in (None, "forged"):
            sent = {**fields, "csrf_token": token} if token else fields
            assert rene.post(path, data=sent).status_code == 400, path
    # The API takes a session only with the page's token in X-CSRFToken.
    assert rene.post("/api/v1/notebooks", json={"name": "x", "spec": "1 TPU",
                                                "pool": "default"}).json["error"]["code"] \
        == "csrf"
    assert rene.post(f"/api/v1/notebooks/{notebook_id}/start").status_code == 400
    assert rene.delete(f"/api/v1/notebooks/{notebook_id}").status_code == 400
    with app.app_context():
        assert counts() == [1, 0, 0, 0] and not Notebook.get_by_id(notebook_id).deleted


def test_a_miner_may_not_open_the_notebook_pages(client, world, app):
    notebook_id = make_in(app)
    login(client, "miner", "mina", PASSWORD)
    for path in ("/renter/notebooks", "/renter/notebooks/new",
                 f"/renter/notebooks/{notebook_id}", "/api/v1/notebooks"):
        assert client.get(path).status_code == 403, path


# --- the JSON API ------------------------------------------------------------------------


@pytest.fixture
def tokens(app, world):
    with app.app_context():
        return {user.name: {"Authorization": f"Bearer {create_token(user, 'test')[1]}"}
                for user in User.select()}


def created(client, headers, **body):
    body = {"name": "lab", "spec": "1 TPU", "pool": "default", **body}
    response = client.post("/api/v1/notebooks", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json


def test_the_api_creates_lists_starts_stops_and_deletes(client, app, tokens):
    rene = tokens["rene"]
    notebook = created(client, rene, count=2)
    assert (notebook["image"], notebook["spec"], notebook["pool"], notebook["count"],
            notebook["algorithm_version"], notebook["dataset_version"], notebook["state"]) == (
        JUPYTER_IMAGE, "1 TPU", "default", 2, None, None, "pending")
    run = notebook["run"]
    assert [(r["role"], r["state"]) for r in run["replicas"]] == [("lab-0", "pending"),
                                                                  ("lab-1", "pending")]
    url = f"/api/v1/notebooks/{notebook['id']}"
    assert client.get(url, headers=rene).json == notebook
    assert [n["id"] for n in client.get("/api/v1/notebooks", headers=rene).json] == [
        notebook["id"]]
    assert client.post(f"{url}/start", headers=rene).json["error"]["code"] == "conflict"
    assert client.delete(url, headers=rene).status_code == 409
    stopped = client.post(f"{url}/stop", headers=rene).json
    assert stopped["state"] == "stopped" and stopped["run"]["stop_requested"]
    assert client.post(f"{url}/stop", headers=rene).status_code == 409
    again = client.post(f"{url}/start", headers=rene)
    assert again.status_code == 200 and again.json["run"]["id"] != run["id"]
    client.post(f"{url}/stop", headers=rene)
    assert client.delete(url, headers=rene).status_code == 204
    assert client.get(url, headers=rene).json["error"]["code"] == "not_found"
    assert client.get("/api/v1/notebooks", headers=rene).json == []


def test_the_api_can_create_without_starting(client, app, tokens):
    with app.app_context():
        version = code_version(renter())
    notebook = created(client, tokens["rene"], start=False, image=IMAGE,
                       algorithm_version=version.id)
    assert notebook["run"] is None and notebook["state"] is None
    assert (notebook["image"], notebook["algorithm_version"]) == (IMAGE, version.id)


@pytest.mark.parametrize("body, status, code, field", [
    ({"count": 9}, 400, "invalid_body", "count"),
    ({"spec": "nope"}, 409, "conflict", "spec"),
    ({"dataset_version": "../x"}, 400, "invalid_body", "dataset_version"),
    ({"dataset_version": 999999}, 409, "conflict", "dataset_version"),
    ({"algorithm_version": 0}, 400, "invalid_body", "algorithm_version"),
    ({"algorithm_version": 999999}, 409, "conflict", "algorithm_version"),
    ({"pool": "lab"}, 409, "conflict", "pool"),
    ({"name": "a\u202eb"}, 400, "invalid_body", "name"),
    ({"secret": "mine"}, 400, "invalid_body", "secret"),
    ({"count": "2"}, 400, "invalid_body", "count"),
])
def test_the_api_refuses_bad_bodies(client, app, tokens, body, status, code, field):
    body = {"name": "lab", "spec": "1 TPU", "pool": "default", **body}
    response = client.post("/api/v1/notebooks", json=body, headers=tokens["rene"])
    assert response.status_code == status and response.json["error"]["code"] == code
    if field:
        assert field in response.json["error"]["fields"]
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


def test_the_api_answers_404_for_a_notebook_that_is_not_yours(client, app, tokens):
    notebook = created(client, tokens["rene"], start=False)
    for method, path in notebook_urls(notebook["id"]):
        if path.startswith("/api"):
            response = client.open(path, method=method, headers=tokens["rita"])
            assert response.status_code == 404, (method, path)
    assert client.get("/api/v1/notebooks", headers=tokens["mina"]).status_code == 403


def test_the_jupyter_token_is_on_no_page_and_in_no_answer(rene, app):
    token = csrf_token(rene, "/renter/notebooks/new")
    headers = {"X-CSRFToken": token}
    created_json = rene.post("/api/v1/notebooks", headers=headers,
                             json={"name": "lab", "spec": "1 TPU", "pool": "default"})
    notebook_id = created_json.json["id"]
    with app.app_context():
        first = notebooks.active_run(Notebook.get_by_id(notebook_id))
        set_state(first, "running", address="10.88.0.5:8888")
    answers = [created_json, rene.get("/renter/notebooks"),
               rene.get(f"/renter/notebooks/{notebook_id}"), rene.get("/api/v1/notebooks"),
               rene.get(f"/api/v1/notebooks/{notebook_id}"),
               rene.post(f"/api/v1/notebooks/{notebook_id}/stop", headers=headers),
               rene.get("/renter/tasks"), rene.get("/api/v1/tasks"), rene.get("/renter/")]
    with app.app_context():
        set_state(first, "stopped")
    answers.append(rene.post(f"/api/v1/notebooks/{notebook_id}/start", headers=headers))
    with app.app_context():
        secrets = [run.secret for run in Task.select().where(Task.notebook == notebook_id)]
    assert len(secrets) == 2 and all(len(secret) >= 40 for secret in secrets)
    for answer in answers:
        assert answer.status_code in (200, 201), answer.request.path
        body = answer.get_data(as_text=True)
        assert not any(secret in body for secret in secrets), answer.request.path
