"""Task templates (``portal.task_templates``): save, list, change, delete, share, run, by the
rules, the renter's pages and the JSON API; another renter's template is a 404 everywhere.

The world of ``test_tasks`` (nodes and specs as rows); everything else goes through the real
rules, forms, API and SQLite database.
"""

import json

import pytest
from werkzeug.exceptions import NotFound

from portal import specs, task_templates
from portal.models import Group, Membership, Task, TaskTemplate, User
from portal.pools import default_pool, set_pool_limits
from portal.task_input import TaskError
from portal.tokens import create_token
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit.test_algorithms import code_version
from tests.unit.test_datasets import data_version
from tests.unit.test_tasks import FORM, IMAGE, ctx, submit, world  # noqa: F401 (fixtures)

FIELDS = {"name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "env": {"A": "1"},
          "pool": "default", "subtasks": [("worker", "1 TPU", 2)], "max_run_minutes": "30"}


def user(name="rene"):
    return User.get(User.name == name)


def save(name="nightly", owner=None, **changes):
    return task_templates.save_template(owner or user(), name, "every night",
                                        {**FIELDS, **changes})


def share_with_rita(template):
    group = Group.create(name="team")
    Membership.create(user=user("rene"), group=group)
    Membership.create(user=user("rita"), group=group)
    task_templates.share_template(template, [group.id])
    return group


def test_a_template_holds_the_whole_checked_definition(ctx):  # noqa: F811 (the fixture)
    template = save()
    assert json.loads(template.definition) == {
        "name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "env": {"A": "1"},
        "pool": "default", "subtasks": [{"role": "worker", "spec": "1 TPU", "replicas": 2}],
        "max_run_minutes": 30, "algorithm_version": None, "dataset_version": None}
    assert (template.name, template.description) == ("nightly", "every night")


def test_a_bad_template_names_every_field_and_saves_nothing(ctx):  # noqa: F811 (the fixture)
    save()
    with pytest.raises(TaskError) as info:
        save(image="", subtasks=[("w", "nope", 1)], max_run_minutes="0")
    assert set(info.value.errors) == {"template_name", "image", "subtasks[0].spec",
                                      "max_run_minutes"}
    assert "already" in info.value.errors["template_name"]
    assert TaskTemplate.select().count() == 1


def test_a_task_saved_as_template_runs_again_the_same(ctx):  # noqa: F811 (the fixture)
    task = submit(max_run_minutes=5)
    template = task_templates.save_task_as_template(user(), task, "again")
    run = task_templates.run_template(user(), template).task
    assert run.template_id == template.id and run.user_id == user().id
    assert task_templates.task_definition(run) == task_templates.task_definition(task)
    assert run.max_run_minutes == 5


def test_run_with_overrides_and_the_submissions_own_refusal(ctx):  # noqa: F811 (the fixture)
    template = save()
    run = task_templates.run_template(user(), template, {"name": "other", "env": {}}).task
    assert (run.name, json.loads(run.env)) == ("other", {})
    spec = specs.ResourceSpec.get(specs.ResourceSpec.name == "1 TPU")
    specs.set_spec_enabled(spec, False)
    with pytest.raises(TaskError) as info:
        task_templates.run_template(user(), template)
    assert "There is no spec '1 TPU' you may use." in info.value.errors["subtasks[0].spec"]
    specs.set_spec_enabled(spec, True)
    set_pool_limits(default_pool(), max_run_minutes=10)  # the pool's cap, lowered since
    with pytest.raises(TaskError) as info:
        task_templates.run_template(user(), template)
    assert "at most 10 minutes" in info.value.errors["max_run_minutes"]


def test_owner_and_shares_decide_who_sees_a_template(ctx):  # noqa: F811 (the fixture)
    template = save()
    rita = user("rita")
    with pytest.raises(NotFound):
        task_templates.get_template_or_404(rita, template.id)
    assert task_templates.template_views(rita) == []
    share_with_rita(template)
    view = task_templates.get_template_or_404(rita, template.id)
    assert not view.mine and view.owner == "Rene Renter"
    with pytest.raises(NotFound):
        task_templates.get_template_or_404(rita, template.id, own=True)
    run = task_templates.run_template(rita, template).task
    assert run.user_id == rita.id and run.template_id == template.id
    assert [v.template.id for v in task_templates.template_views(rita)] == [template.id]
    other = Group.create(name="elsewhere")
    with pytest.raises(TaskError):  # only the owner's own groups
        task_templates.share_template(template, [other.id])


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def rene(client, world):  # noqa: F811
    login(client, "renter", "rene", PASSWORD)
    return client


def text(response):
    return response.get_data(as_text=True)


def post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/renter/tasks/new"),
                                   **data})


def test_save_run_and_edit_from_the_pages(rene, app):
    page = text(rene.get("/renter/templates"))
    assert 'id="new"' in page and "No templates yet." in page
    saved = post(rene, "/renter/templates", **FORM, template_name="<i>mine</i>",
                 max_run_minutes="20")
    assert saved.status_code == 303, text(saved)
    with app.app_context():
        template = TaskTemplate.get()
    page = text(rene.get(saved.headers["Location"]))
    assert "&lt;i&gt;mine&lt;/i&gt;" in page and "<i>mine" not in page and "0 h 20 min" in page
    ran = post(rene, f"/renter/templates/{template.id}/run")
    assert ran.status_code == 303
    task_page = text(rene.get(ran.headers["Location"]))
    assert 'id="task-template"' in task_page and "&lt;i&gt;mine&lt;/i&gt;" in task_page
    with app.app_context():
        task = Task.get()
        assert (task.template_id, task.max_run_minutes) == (template.id, 20)
    form = text(rene.get(f"/renter/tasks/new?template={template.id}"))
    assert f'name="template" type="hidden" value="{template.id}"' in form
    assert 'value="20"' in form and 'id="update-template"' in form
    changed = post(rene, f"/renter/templates/{template.id}", **FORM, template_name="mine",
                   max_run_minutes="", template=str(template.id))
    assert changed.status_code == 303
    with app.app_context():
        assert json.loads(TaskTemplate.get().definition)["max_run_minutes"] is None
    edited = post(rene, "/renter/tasks", **FORM, template=str(template.id))
    assert edited.status_code == 303
    with app.app_context():
        assert Task.select().where(Task.template == template.id).count() == 2


def test_a_refused_template_shows_the_form_again(rene, app):
    refused = post(rene, "/renter/templates", **{**FORM, "image": ""}, template_name="")
    assert refused.status_code == 400
    page = text(refused)
    assert "Enter a name." in page and "Enter an image" in page
    assert 'id="save-template" open' in page
    with app.app_context():
        assert TaskTemplate.select().count() == 0


def test_a_task_page_saves_its_task_as_template(rene, app):
    with app.app_context():
        task_id = submit().id
    saved = post(rene, f"/renter/tasks/{task_id}/save-template", template_name="from task")
    assert saved.status_code == 303
    with app.app_context():
        assert TaskTemplate.get().name == "from task"


def test_run_refused_shows_the_reason(rene, app):
    with app.app_context():
        template = save()
        specs.set_spec_enabled(specs.ResourceSpec.get(specs.ResourceSpec.name == "1 TPU"), False)
    refused = post(rene, f"/renter/templates/{template.id}/run")
    assert refused.status_code == 303
    assert "There is no spec" in text(rene.get(refused.headers["Location"]))


def test_another_renters_template_is_not_found_by_page(client, app, world):  # noqa: F811
    with app.app_context():
        template = save()
    login(client, "renter", "rita", PASSWORD)
    for path in (f"/renter/templates/{template.id}", f"/renter/tasks/new?template={template.id}"):
        assert client.get(path).status_code == 404
    for path in ("run", "share", "delete"):
        assert post(client, f"/renter/templates/{template.id}/{path}").status_code == 404
    assert "nightly" not in text(client.get("/renter/templates"))
    with app.app_context():
        share_with_rita(TaskTemplate.get_by_id(template.id))
    page = text(client.get("/renter/templates"))
    assert "nightly" in page and "shared by Rene Renter" in page
    assert post(client, f"/renter/templates/{template.id}/delete").status_code == 404
    assert post(client, f"/renter/templates/{template.id}/run").status_code == 303


# --- API ---------------------------------------------------------------------------------


@pytest.fixture
def api(app, client, world):  # noqa: F811
    with app.app_context():
        tokens = {name: create_token(user(name), "t")[1] for name in ("rene", "rita")}

    def call(who, method, path, **kwargs):
        return client.open(f"/api/v1{path}", method=method,
                           headers={"Authorization": f"Bearer {tokens[who]}"}, **kwargs)
    return call


DEFINITION = {"name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "pool": "default",
              "subtasks": [{"role": "worker", "spec": "1 TPU", "replicas": 1}]}


def test_the_api_creates_changes_runs_shares_and_deletes(api, app):
    made = api("rene", "POST", "/templates", json={"name": "n", "definition": DEFINITION})
    assert made.status_code == 201, made.json
    tid = made.json["id"]
    assert made.json["definition"]["max_run_minutes"] is None and made.json["mine"]
    taken = api("rene", "POST", "/templates", json={"name": "n", "definition": DEFINITION})
    assert taken.status_code == 409 and "name" in taken.json["error"]["fields"]
    bad = api("rene", "POST", "/templates", json={
        "name": "m", "definition": {**DEFINITION, "pool": "nowhere"}})
    assert bad.status_code == 409 and "definition.pool" in bad.json["error"]["fields"]
    changed = api("rene", "PATCH", f"/templates/{tid}", json={"description": "d"})
    assert changed.json["description"] == "d" and changed.json["definition"]["name"] == "train"
    run = api("rene", "POST", f"/templates/{tid}/run", json={"name": "override"})
    assert run.status_code == 201 and run.json["template"] == tid
    assert run.json["name"] == "override"
    for method, path, body in (("GET", "", None), ("PATCH", "", {"description": "x"}),
                               ("DELETE", "", None), ("POST", "/run", {}),
                               ("PUT", "/share", {"groups": []})):
        assert api("rita", method, f"/templates/{tid}{path}", json=body).status_code == 404
    with app.app_context():
        group = Group.create(name="team")
        Membership.create(user=user("rene"), group=group)
        Membership.create(user=user("rita"), group=group)
    shared = api("rene", "PUT", f"/templates/{tid}/share", json={"groups": ["team"]})
    assert shared.json["shared_with"] == ["team"]
    assert api("rene", "PUT", f"/templates/{tid}/share",
               json={"groups": ["nope"]}).status_code == 409
    seen = api("rita", "GET", "/templates").json
    assert [(t["id"], t["mine"], t["shared_with"]) for t in seen] == [(tid, False, [])]
    assert api("rita", "POST", f"/templates/{tid}/run", json={}).status_code == 201
    assert api("rita", "DELETE", f"/templates/{tid}").status_code == 404
    assert api("rene", "DELETE", f"/templates/{tid}").status_code == 204
    assert api("rene", "GET", f"/templates/{tid}").status_code == 404


def test_algorithm_and_dataset_versions_go_with_the_template(ctx):  # noqa: F811 (the fixture)
    code, data = code_version(), data_version()
    task = submit(algorithm_version=code.id, dataset_version=data.id)
    template = task_templates.save_task_as_template(user(), task, "with data")
    definition = json.loads(template.definition)
    assert (definition["algorithm_version"], definition["dataset_version"]) == (code.id, data.id)
    run = task_templates.run_template(user(), template).task
    assert (run.algorithm_version_id, run.dataset_version_id) == (code.id, data.id)
    with pytest.raises(TaskError) as info:  # rita may not use rene's algorithm
        save(owner=user("rita"), algorithm_version=code.id)
    assert "algorithm_version" in info.value.errors
