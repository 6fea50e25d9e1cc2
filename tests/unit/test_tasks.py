"""Training tasks: the rules (``portal.tasks``, ``portal.task_input``, ``portal.task_views``)
and the renter's task pages.

Nodes and chips are rows standing for what discovery found; replica states the
scheduler would write are set directly where a test needs a started replica.
Everything else goes through the real rules, forms and SQLite database.
"""

import json
import re

import pytest
from werkzeug.exceptions import NotFound

from portal import specs, task_input, task_views, tasks
from portal.models import (
    CustomResource,
    Group,
    Membership,
    Node,
    NodeChip,
    Pool,
    PoolGroup,
    Replica,
    ReplicaEvent,
    ResourceSpec,
    Subtask,
    Task,
    User,
)
from portal.signals import tasks_changed
from portal.task_input import TaskError
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, fund, login

BM1684X = "sophgo.com/bm1684x"
IMAGE = "localhost/hourglass-test-busybox:latest"
METACHARACTERS = ["/bin/sh", "-c", "echo $HOME; id | cat && `uname` > /tmp/x $(whoami) '\"*?"]


def add_node(name, chips=0, pool=None, images=(), cores=8, gb=16, **flags):
    node = Node.create(name=name, url=f"unix:///run/{name}.sock", cpu_millis=cores * 1000,
                       memory_mib=gb * 1024, ready=True, pool=pool,
                       images=json.dumps(list(images)), **flags)
    for index in range(chips):
        NodeChip.create(node=node, kind=BM1684X, index=index, device=f"/dev/bm-sophon{index}")
    return node


def make_spec(name, cores, gb, chips, price="1.5"):
    tpu = CustomResource.get(CustomResource.name == "TPU 1684X")
    values = specs.parse_spec(name, str(cores), str(gb), price, {tpu: str(chips)})
    return specs.save_spec(None, values)


@pytest.fixture
def world(app, accounts):
    """The default pool (open to all) with node ``box`` (4 TPUs, two images); pool ``lab``
    for group ``lab-group`` with node ``big`` (16 TPUs); specs ``1 TPU`` (fits both),
    ``16 TPU`` (fits only big), ``off`` (disabled); a second renter ``rita``."""
    with app.app_context():
        lab = Pool.create(name="lab")
        group = Group.create(name="lab-group")
        PoolGroup.create(pool=lab, group=group)
        add_node("box", chips=4, images=[IMAGE, "localhost/train:1"])
        add_node("big", chips=16, pool=lab, images=["localhost/lab-only:2"], cores=32, gb=64)
        specs.create_resource("TPU 1684X", BM1684X)
        make_spec("1 TPU", 1, 1, 1)
        make_spec("16 TPU", 4, 8, 16)
        specs.set_spec_enabled(make_spec("off", 1, 1, 1), False)
        fund(create_user("rita", "renter", PASSWORD))
    return {"lab": lab.id, "group": group.id}


@pytest.fixture
def ctx(app, world):
    with app.app_context():
        yield app


def renter(name="rene"):
    return User.get(User.name == name)


def submit(user=None, **overrides):
    """A valid task for rene in the default pool (one "worker" subtask of 2 replicas)."""
    params = {"name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "env": {"A": "1"},
              "pool": "default", "subtasks": [("worker", "1 TPU", 2)]}
    params.update(overrides)
    return tasks.create_task(user or renter(), **params)


def errors_of(call, *args, **kwargs):
    with pytest.raises(TaskError) as info:
        call(*args, **kwargs)
    return info.value.errors


def counts():
    return [model.select().count() for model in (Task, Subtask, Replica, ReplicaEvent)]


def set_state(task, state, **fields):
    """What the scheduler would write: every replica of ``task`` in ``state``."""
    Replica.update(state=state, **fields).where(Replica.task == task).execute()


@pytest.fixture
def signals(app):
    """The tasks_changed signals sent, as (sender, task_id); a real blinker receiver."""
    received = []

    def receive(sender, **extra):
        received.append((sender, extra.get("task_id")))

    tasks_changed.connect(receive, weak=False)
    yield received
    tasks_changed.disconnect(receive)


# --- derived state -----------------------------------------------------------------------


@pytest.mark.parametrize("states, expected", [
    ([], "pending"),
    (["pending", "pending"], "pending"),
    (["pending", "starting"], "starting"),
    (["running", "pending"], "running"),
    (["running", "failed"], "running"),
    (["running", "succeeded"], "running"),
    (["starting", "succeeded"], "starting"),
    (["pending", "stopped"], "pending"),
    (["succeeded", "succeeded"], "succeeded"),
    (["succeeded", "failed"], "failed"),
    (["stopped", "failed", "lost"], "failed"),
    (["succeeded", "lost"], "lost"),
    (["stopped", "lost"], "lost"),
    (["succeeded", "stopped"], "stopped"),
    (["stopped"], "stopped"),
])
def test_derive_state(states, expected):
    assert task_views.derive_state(states) == expected
    assert task_views.derive_state(reversed(states)) == expected


# --- creating a task ---------------------------------------------------------------------


def test_a_task_is_written_whole_and_wakes_the_scheduler(ctx, signals):
    task = submit(subtasks=[("worker", "1 TPU", 2), ("ps", "1 TPU", 1)])
    assert (task.kind, task.state, task.pool.name, task.user.name) == (
        "training", "pending", "default", "rene")
    assert json.loads(task.argv) == ["/bin/echo", "hi"] and json.loads(task.env) == {"A": "1"}
    subtasks = {s.role: s for s in task.subtasks}
    assert {role: (s.spec.name, s.count) for role, s in subtasks.items()} == {
        "worker": ("1 TPU", 2), "ps": ("1 TPU", 1)}
    replicas = list(Replica.select().where(Replica.task == task).order_by(Replica.id))
    assert [(r.subtask.role, r.index, r.state) for r in replicas] == [
        ("worker", 0, "pending"), ("worker", 1, "pending"), ("ps", 0, "pending")]
    for replica in replicas:
        assert [(e.state, e.reason) for e in replica.events] == [("pending", "submitted")]
    assert signals == [(ctx, task.id)]


def test_shell_metacharacters_are_kept_as_literal_arguments(ctx):
    task = submit(argv=METACHARACTERS, env={"X": "$(id); `x` | y"})
    assert json.loads(task.argv) == METACHARACTERS
    assert json.loads(task.env) == {"X": "$(id); `x` | y"}


@pytest.mark.parametrize("image", [
    "busybox", "localhost/hourglass-test-busybox:latest", "registry.example.com:5000/a/b:1.0",
    "a__b/c.d-e:v1_2", "ubuntu@sha256:" + "a" * 64, "Lab-Registry.local/x/y:TAG",
])
def test_valid_image_references(ctx, image):
    # Their syntax; which of them a renter may use is test_renter_images's.
    assert task_input.check_image(image) == image


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Enter a name."),
    ("name", "   ", "Enter a name."),
    ("name", "x" * 97, "At most 96 characters."),
    ("name", "a\nb", "control characters"),
    ("name", 5, "Enter a name."),
    ("image", "", "Enter an image"),
    ("image", "-v /:/host", "Not an image reference"),
    ("image", "Busybox", "Not an image reference"),
    ("image", "busybox; rm -rf /", "Not an image reference"),
    ("image", "a:b:c", "Not an image reference"),
    ("image", "a" * 256, "Not an image reference"),
    ("image", None, "Enter an image"),
    ("argv", [], "Enter the command"),
    ("argv", [""], "Enter the command"),
    ("argv", "echo hi", "list of strings"),
    ("argv", ["echo", 1], "list of strings"),
    ("argv", ["x"] * 1025, "At most 1024 arguments."),
    ("argv", ["x" * 4097], "4096 characters"),
    ("argv", ["x" * 4000] * 17, "64 KiB"),
    ("argv", ["echo", "a\x00b"], "NUL"),
    ("env", {"1A": "x"}, "is not a variable name"),
    ("env", {"A-B": "x"}, "is not a variable name"),
    ("env", {"": "x"}, "is not a variable name"),
    ("env", {"HOURGLASS_TASK_ID": "7"}, "is set by Hourglass"),
    ("env", {"RANK": "0"}, "is set by Hourglass"),
    ("env", {"WORLD_SIZE": "9"}, "is set by Hourglass"),
    ("env", {f"V{i}": "x" for i in range(65)}, "At most 64 variables."),
    ("env", {"A": "x" * 4097}, "longer than 4096"),
    ("env", {"A": 1}, "maps names to strings"),
    ("env", ["A=1"], "maps names to strings"),
    ("env", "A=1\nnot a pair", "NAME=value"),
    ("env", "A=1\nA=2", "A is set twice."),
    ("pool", "nowhere", "There is no pool 'nowhere' open to you."),
    ("pool", "lab", "There is no pool 'lab' open to you."),
    ("pool", None, "There is no pool"),
])
def test_bad_values_are_refused_and_nothing_is_saved(ctx, signals, field, value, message):
    errors = errors_of(submit, **{field: value})
    assert message in errors[field], errors
    assert counts() == [0, 0, 0, 0] and signals == []


@pytest.mark.parametrize("subtasks, key, message", [
    ([], "subtasks", "Add at least one subtask"),
    ([("w", "1 TPU", 1)] * 9, "subtasks", "At most 8 subtasks."),
    ([("Worker", "1 TPU", 1)], "subtasks[0].role", "A role is 1-32 lowercase"),
    ([("9w", "1 TPU", 1)], "subtasks[0].role", "A role is"),
    ([("w" * 33, "1 TPU", 1)], "subtasks[0].role", "A role is"),
    ([("<b>", "1 TPU", 1)], "subtasks[0].role", "A role is"),
    ([("w", "1 TPU", 1), ("w", "1 TPU", 1)], "subtasks[1].role", "'w' is used twice"),
    ([("w", "no such spec", 1)], "subtasks[0].spec", "There is no spec 'no such spec'"),
    ([("w", "off", 1)], "subtasks[0].spec", "There is no spec 'off' you may use."),
    ([("w", "16 TPU", 1)], "subtasks[0].spec", "There is no spec '16 TPU' you may use."),
    ([("w", None, 1)], "subtasks[0].spec", "Choose a spec."),
    ([("w", 7, 1)], "subtasks[0].spec", "There is no spec '7'"),
    ([("w", "1 TPU", 0)], "subtasks[0].replicas", "from 1 to 64"),
    ([("w", "1 TPU", 65)], "subtasks[0].replicas", "from 1 to 64"),
    ([("w", "1 TPU", True)], "subtasks[0].replicas", "from 1 to 64"),
    ([("w", "1 TPU", "two")], "subtasks[0].replicas", "from 1 to 64"),
    ([("w", "1 TPU", 1.0)], "subtasks[0].replicas", "from 1 to 64"),
])
def test_bad_subtasks_are_refused(ctx, subtasks, key, message):
    errors = errors_of(submit, subtasks=subtasks)
    assert message in errors[key], errors
    assert counts() == [0, 0, 0, 0]


def test_every_bad_field_is_reported_at_once(ctx):
    errors = errors_of(submit, name="", image="", argv=[], env={"1": "x"}, pool="nowhere",
                       subtasks=[("w", "nope", 0)])
    assert set(errors) == {"name", "image", "argv", "env", "pool", "subtasks[0].spec",
                           "subtasks[0].replicas"}


def test_a_spec_must_fit_the_chosen_pool(ctx):
    """A renter of both pools may pick ``16 TPU``, but only in the lab pool."""
    Membership.create(user=renter(), group=Group.get(Group.name == "lab-group"))
    errors = errors_of(submit, subtasks=[("w", "16 TPU", 1)])
    assert "No node of pool 'default' is large enough for '16 TPU'." in errors["subtasks[0].spec"]
    assert submit(pool="lab", subtasks=[("w", "16 TPU", 1)]).pool.name == "lab"


def test_a_node_that_is_down_makes_a_task_wait_not_fail(ctx):
    """Ready and cordoned are passing states: the scheduler says why the task waits."""
    Node.update(ready=False, cordoned=True).execute()
    assert submit().state == "pending"
    Node.update(enabled=False).execute()
    assert "There is no spec '1 TPU'" in errors_of(submit)["subtasks[0].spec"]


def _lab_member():
    Membership.create(user=renter(), group=Group.get(Group.name == "lab-group"))


def _default_pool_bound():
    PoolGroup.create(pool=Pool.get(Pool.is_default == True), group=Group.create(name="x"))  # noqa: E712


# (what changes in the world first, the submission's overrides): right and wrong ones
QUICK_CASES = [
    (None, {}),
    (None, {"subtasks": [("worker", "1 TPU", 2), ("ps", "1 TPU", "1"), ("x", "1 TPU", 64)]}),
    (None, {"pool": "lab"}),
    (None, {"pool": "nowhere"}),
    (None, {"pool": 7}),
    (None, {"pool": None}),
    (None, {"subtasks": [("w", "16 TPU", 1)]}),
    (None, {"subtasks": [("w", "off", 1)]}),
    (None, {"subtasks": [("w", "no such spec", 1)]}),
    (None, {"subtasks": [("w", "", 1)]}),
    (None, {"subtasks": [("w", 7, 1)]}),
    (None, {"subtasks": [("W", "1 TPU", 1)]}),
    (None, {"subtasks": [("w", "1 TPU", 1), ("w", "1 TPU", 1)]}),
    (None, {"subtasks": [("w", "1 TPU", 0)]}),
    (None, {"subtasks": [("w", "1 TPU", True)]}),
    (None, {"subtasks": []}),
    (None, {"subtasks": "w"}),
    (None, {"subtasks": [(f"w{i}", "1 TPU", 1) for i in range(9)]}),
    (None, {"subtasks": [("a", "1 TPU", 1), ("b", "16 TPU", 1)]}),
    (None, {"name": "", "pool": "lab"}),
    (_lab_member, {"pool": "lab", "subtasks": [("w", "16 TPU", 1)]}),
    (_lab_member, {"subtasks": [("w", "16 TPU", 1)]}),
    (_lab_member, {"pool": "lab", "subtasks": [("w", "1 TPU", 3), ("p", "16 TPU", 1)]}),
    (_default_pool_bound, {}),
    (lambda: Node.update(ready=False, cordoned=True, draining=True).execute(), {}),
    (lambda: Node.update(enabled=False).where(Node.name == "box").execute(), {}),
    (lambda: NodeChip.update(present=False).where(NodeChip.index > 0).execute(), {}),
    (lambda: NodeChip.update(present=False).execute(), {}),
    (lambda: Node.update(pool=Pool.get(Pool.is_default == True)).execute(), {}),  # noqa: E712
    (lambda: Node.update(pool=None).execute(), {"subtasks": [("w", "16 TPU", 1)]}),
    (lambda: (Node.update(cpu_millis=500).where(Node.name == "box").execute()), {}),
]


@pytest.mark.parametrize("change, overrides", QUICK_CASES)
def test_the_quick_check_accepts_and_refuses_as_the_whole_one(ctx, monkeypatch, change,
                                                               overrides):
    """A right submission is proved right by a few queries (``_accepted``); anything else
    goes the whole way, over every pool and spec, which words the refusal. The two must
    agree: each case is submitted both ways, and the outcomes are the same."""
    if change:
        change()

    def outcome():
        try:
            view = tasks.submit_task(renter(), **{
                "name": "train", "image": IMAGE, "argv": ["/bin/echo", "hi"], "env": {},
                "pool": "default", "subtasks": [("worker", "1 TPU", 2)], **overrides})
        except TaskError as exc:
            return exc.errors
        return (view.task.pool.name, [(s.subtask.role, s.subtask.spec.name, s.count)
                                      for s in view.subtasks])

    quick = outcome()
    monkeypatch.setattr(task_input, "_accepted", lambda *args: None)
    assert outcome() == quick


def test_a_right_submission_reads_one_pool_and_the_specs_it_names(ctx, monkeypatch):
    """Neither every pool nor every spec is read for a submission that is right."""
    _lab_member()

    def everything(*args, **kwargs):
        raise AssertionError("the whole check ran")

    monkeypatch.setattr(task_input, "pool_views", everything)
    monkeypatch.setattr(task_input, "spec_views", everything)
    assert submit(pool="lab", subtasks=[("w", "16 TPU", 1), ("p", "1 TPU", 2)]).pool.name == "lab"
    assert submit().pool.name == "default"
    with pytest.raises(AssertionError):
        submit(pool="nowhere")


def test_the_answer_to_a_submission_is_the_task_read_back(ctx):
    """``submit_task``'s view is made from the rows it wrote; reading them gives the same."""
    made = tasks.submit_task(renter(), "train", IMAGE, ["a", "b"], {"A": "1"}, "default",
                             [("worker", "1 TPU", 2), ("ps", "1 TPU", 1)])
    read = task_views.task_view(Task.get_by_id(made.task.id))

    def seen(view):
        task = view.task
        return ([task.id, task.name, task.image, task.argv, task.env, task.pool.name,
                 task.state, task.reason, task.submitted_at, task.stop_requested,
                 task.rerun_of_id, view.state],
                [(s.subtask.id, s.subtask.role, s.subtask.spec.name, s.subtask.spec_id,
                  s.count, s.state,
                  [(r.replica.id, r.replica.index, r.replica.state, r.replica.reason,
                    r.replica.node, r.replica.exit_code, r.replica.started_ns,
                    r.replica.finished_ns, r.replica.price_per_hour, r.replica.billed_seconds,
                    r.replica.charged, [(e.at, e.state, e.reason) for e in r.events])
                   for r in s.replicas]) for s in view.subtasks])

    assert seen(made) == seen(read)


def test_form_helpers_read_lines(ctx):
    assert task_input.command_lines("python3 \r\n\n /code/train.py\r--lr=0.1; rm -rf /\n") == [
        "python3", "/code/train.py", "--lr=0.1; rm -rf /"]
    assert json.loads(submit(env="A = 1\n\nB=x=y \r\nC=").env) == {"A": "1", "B": "x=y",
                                                                   "C": ""}


# --- stop, run again, delete -------------------------------------------------------------


def test_stopping_a_task_that_never_started_stops_it_at_once(ctx, signals):
    task = submit()
    tasks.request_stop(task)
    task = Task.get_by_id(task.id)
    assert task.stop_requested and task.state == "stopped"
    for replica in Replica.select().where(Replica.task == task):
        assert (replica.state, replica.reason) == ("stopped", "stopped by you")
        assert [(e.state, e.reason) for e in replica.events.order_by(ReplicaEvent.id)] == [
            ("pending", "submitted"), ("stopped", "stopped by you")]
    assert signals == [(ctx, task.id), (ctx, task.id)]
    assert "ended already" in errors_of(tasks.request_stop, task)[None]


def test_stopping_a_running_task_leaves_started_replicas_to_the_scheduler(ctx):
    task = submit(subtasks=[("worker", "1 TPU", 1), ("ps", "1 TPU", 1)])
    worker = Replica.get(Replica.task == task, Replica.index == 0,
                         Replica.subtask == Subtask.get(Subtask.role == "worker"))
    Replica.update(state="running").where(Replica.id == worker.id).execute()
    tasks.request_stop(task)
    states = {r.subtask.role: r.state for r in Replica.select().where(Replica.task == task)}
    assert states == {"worker": "running", "ps": "stopped"}
    view = task_views.task_view(Task.get_by_id(task.id))
    assert (view.state, view.stopping, view.can_stop, view.ended) == (
        "running", True, False, False)


def test_run_again_copies_the_parameters(ctx, signals):
    old = submit(argv=METACHARACTERS, env={"A": "1", "B": "2"},
                 subtasks=[("worker", "1 TPU", 2), ("ps", "1 TPU", 1)])
    assert "once it has ended" in errors_of(tasks.rerun, old)[None]
    set_state(old, "succeeded", exit_code=0)
    new = tasks.rerun(old)
    assert new.id != old.id and new.rerun_of_id == old.id
    for attribute in ("name", "image", "argv", "env", "pool_id", "user_id", "kind"):
        assert getattr(new, attribute) == getattr(old, attribute)
    assert [(s.role, s.spec_id, s.count)
            for s in new.subtasks.order_by(Subtask.id)] == [
        (s.role, s.spec_id, s.count) for s in old.subtasks.order_by(Subtask.id)]
    assert {r.state for r in new.replicas} == {"pending"} and len(list(new.replicas)) == 3
    assert signals[-1] == (ctx, new.id)


def test_run_again_checks_again(ctx):
    old = submit()
    set_state(old, "failed", exit_code=1)
    specs.set_spec_enabled(ResourceSpec.get(ResourceSpec.name == "1 TPU"),
                               False)
    assert "no spec '1 TPU'" in errors_of(tasks.rerun, old)["subtasks[0].spec"]


@pytest.mark.parametrize("state", ["pending", "starting", "running"])
def test_delete_is_refused_until_every_replica_has_ended(ctx, state):
    task = submit()
    set_state(task, state)
    assert "Stop the task" in errors_of(tasks.delete_task, task)[None]
    assert not Task.get_by_id(task.id).deleted


def test_delete_hides_the_task_and_keeps_its_rows(ctx, signals):
    task = submit()
    set_state(task, "succeeded", exit_code=0)
    tasks.delete_task(task)
    assert Task.get_by_id(task.id).deleted and counts() == [1, 1, 2, 2]
    assert signals[-1] == (ctx, task.id)
    with pytest.raises(NotFound):
        tasks.get_task_or_404(renter(), task.id)
    assert task_views.task_views(renter()) == []


def test_another_renters_task_is_not_found(ctx):
    task = submit()
    assert tasks.get_task_or_404(renter(), task.id) == task
    for user, task_id in [(renter("rita"), task.id), (renter(), task.id + 1), (renter(), 0),
                          (renter(), 2**63), (renter(), -1)]:
        with pytest.raises(NotFound):
            tasks.get_task_or_404(user, task_id)


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def rene(client, world):
    login(client, "renter", "rene", PASSWORD)
    return client


def text(response):
    return response.get_data(as_text=True)


def post(client, path, **data):
    token = csrf_token(client, "/renter/tasks/new")
    return client.post(path, data={"csrf_token": token, **data})


FORM = {"name": "train", "image": IMAGE, "command": "/bin/echo\nhi", "env": "A=1",
        "pool": "default", "subtasks-0-role": "worker", "subtasks-0-spec": "1 TPU",
        "subtasks-0-replicas": "2"}


def make_task(app, **overrides):
    with app.app_context():
        return submit(**overrides).id


def test_the_task_list_replaces_the_placeholder(rene, app):
    assert "not built yet" not in text(rene.get("/renter/tasks"))
    assert "No training tasks yet." in text(rene.get("/renter/tasks"))
    task_id = make_task(app, name="<b>bold</b> 训练")
    page = text(rene.get("/renter/tasks"))
    assert f'data-task="{task_id}"' in page and 'data-state="pending"' in page
    assert "&lt;b&gt;bold&lt;/b&gt; 训练" in page and "<b>bold</b>" not in page
    assert "worker × 2" in page and 'hx-trigger="every 2s"' in page
    # Links inside the polled table must not inherit its target (the page would nest).
    assert 'hx-disinherit="hx-target hx-swap"' in page
    partial = text(rene.get("/renter/tasks", headers={"HX-Request": "true",
                                                      "HX-Target": "task-table"}))
    assert partial.lstrip().startswith("<div") and "<html" not in partial
    assert f'data-task="{task_id}"' in partial


def test_names_and_commands_are_escaped_everywhere(rene, app):
    name = '<b>x</b>" onclick="alert(1)'
    task_id = make_task(app, name=name, argv=["<script>alert(1)</script>"],
                        env={"A": '"><img src=x>'})
    for path in ("/renter/tasks", f"/renter/tasks/{task_id}",
                 f"/renter/tasks/new?from={task_id}"):
        page = text(rene.get(path))
        assert "&lt;b&gt;x&lt;/b&gt;&#34; onclick=&#34;alert(1)" in page, path
        assert "<b>x</b>" not in page and '" onclick="' not in page and "<script>" not in page
        assert "<img src=x>" not in page


def test_the_list_stops_polling_when_every_task_has_ended(rene, app):
    task_id = make_task(app)
    with app.app_context():
        set_state(task_id, "succeeded", exit_code=0)
    page = text(rene.get("/renter/tasks"))
    assert 'data-state="succeeded"' in page and "every 2s" not in page


def test_the_form_offers_open_pools_usable_specs_and_known_images(rene):
    page = text(rene.get("/renter/tasks/new"))
    assert '<option selected value="default">default · runs 1 TPU</option>' in page
    assert 'value="lab"' not in page
    assert "1 TPU · 1.50 UNC per machine-hour" in page
    assert 'value="16 TPU"' not in page and 'value="off"' not in page
    assert f'<option value="{IMAGE}">' in page and "lab-only" not in page
    assert len(re.findall(r'name="subtasks-\d-role"', page)) == 3
    images = text(rene.get("/renter/tasks/images?pool=default"))
    assert "localhost/train:1" in images
    assert "lab-only" not in text(rene.get("/renter/tasks/images?pool=lab"))


def test_submitting_the_form_creates_the_task(rene, app):
    response = post(rene, "/renter/tasks", **{
        **FORM, "command": "/bin/sh\n-c\necho $HOME; id | cat\n",
        "subtasks-1-role": "", "subtasks-1-spec": "", "subtasks-1-replicas": "1",
        "subtasks-2-role": "ps", "subtasks-2-spec": "1 TPU", "subtasks-2-replicas": "1"})
    assert response.status_code == 303
    with app.app_context():
        task = Task.get()
        assert response.headers["Location"] == f"/renter/tasks/{task.id}"
        assert json.loads(task.argv) == ["/bin/sh", "-c", "echo $HOME; id | cat"]
        assert [(s.role, s.count) for s in task.subtasks.order_by(Subtask.id)] == [
            ("worker", 2), ("ps", 1)]
    page = text(rene.get(response.headers["Location"]))
    assert "Submitted &#39;train&#39;." in page and "<code>echo $HOME; id | cat</code>" in page


@pytest.mark.parametrize("field, value, message", [
    ("name", "", "Enter a name."),
    ("image", "not an image", "Not an image reference"),
    ("command", "\n  \n", "Enter the command"),
    ("env", "HOURGLASS_X=1", "is set by Hourglass"),
    ("env", "1A=1", "is not a variable name"),
    ("pool", "lab", "There is no pool"),
    ("subtasks-0-role", "Worker", "A role is"),
    ("subtasks-0-spec", "16 TPU", "There is no spec"),
    ("subtasks-0-spec", "", "Choose a spec."),
    ("subtasks-0-replicas", "0", "from 1 to 64"),
    ("subtasks-0-replicas", "1e3", "from 1 to 64"),
])
def test_bad_form_input_is_shown_next_to_its_field(rene, app, field, value, message):
    response = post(rene, "/renter/tasks", **{**FORM, field: value})
    page = text(response)
    assert response.status_code == 400 and message in page, page
    assert response.headers["HX-Push-Url"] == "/renter/tasks/new"
    assert 'aria-invalid="true"' in page
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


def test_a_form_with_no_subtask_says_so(rene):
    empty = {**FORM, "subtasks-0-role": "", "subtasks-0-spec": ""}
    response = post(rene, "/renter/tasks", **empty)
    assert response.status_code == 400 and "Add at least one subtask" in text(response)


def test_add_subtask_adds_a_row_without_javascript(rene, app):
    data = {**FORM}
    for rows in range(4, 9):
        response = post(rene, "/renter/tasks", action="add-row", **data)
        page = text(response)
        assert response.status_code == 200
        assert len(re.findall(r'name="subtasks-\d-role"', page)) == rows
        # What a browser sends back: every row, the empty ones too.
        data.update({f"subtasks-{i}-role": "" for i in range(1, rows)})
    assert 'value="add-row"' not in page  # 8 rows at most
    assert 'value="worker"' in page and "/bin/echo\nhi" in page
    with app.app_context():
        assert counts() == [0, 0, 0, 0]


def test_edit_and_run_again_fills_the_form(rene, app):
    task_id = make_task(app, argv=["python3", "/code/a b.py"], env={"A": "1", "B": "x y"},
                        subtasks=[("worker", "1 TPU", 3), ("ps", "1 TPU", 1)])
    page = text(rene.get(f"/renter/tasks/new?from={task_id}"))
    assert "python3\n/code/a b.py</textarea>" in page and "A=1\nB=x y</textarea>" in page
    assert 'value="ps"' in page and 'name="subtasks-0-replicas" type="text" value="3"' in page


def test_the_task_page_shows_replicas_transitions_and_why_it_waits(rene, app):
    task_id = make_task(app, subtasks=[("worker", "1 TPU", 2)])
    with app.app_context():
        Task.update(reason="waiting for 2 free TPU 1684X in pool default").execute()
    page = text(rene.get(f"/renter/tasks/{task_id}"))
    assert "waiting for 2 free TPU 1684X in pool default" in page
    assert page.count("submitted") == 2 and 'id="stop-task"' in page
    assert 'id="delete-task"' not in page and 'id="rerun-task"' not in page
    assert 'hx-trigger="every 2s"' in page and "hx-disinherit" in page
    with app.app_context():
        node = Node.get(Node.name == "box")
        set_state(task_id, "failed", exit_code=137, node=node, started_ns=1_700_000_000 * 10**9,
                  finished_ns=1_700_000_061 * 10**9)
        for replica in Replica.select():
            ReplicaEvent.create(replica=replica, state="failed", reason="exit code 137")
    partial = text(rene.get(f"/renter/tasks/{task_id}",
                            headers={"HX-Request": "true", "HX-Target": "task-detail"}))
    assert 'id="task-detail"' in partial and "<html" not in partial
    assert 'data-state="failed"' in partial and "137" in partial and "box" in partial
    assert "2023-11-14 22:13:20" in partial and "2023-11-14 22:14:21" in partial
    assert "exit code 137" in partial and "every 2s" not in partial
    assert 'id="rerun-task"' in partial and 'id="delete-task"' in partial
    assert 'id="stop-task"' not in partial and "hx-confirm" in partial


def test_stop_rerun_and_delete_from_the_page(rene, app):
    task_id = make_task(app)
    response = post(rene, f"/renter/tasks/{task_id}/stop")
    assert response.status_code == 303
    page = text(rene.get(response.headers["Location"]))
    assert "Stopped." in page and 'data-state="stopped"' in page
    assert page.count("stopped by you") == 4  # two replicas: their reason and their event
    response = post(rene, f"/renter/tasks/{task_id}/stop")
    assert "ended already" in text(rene.get(response.headers["Location"]))
    response = post(rene, f"/renter/tasks/{task_id}/rerun")
    with app.app_context():
        new = Task.get(Task.rerun_of == task_id)
    assert response.headers["Location"] == f"/renter/tasks/{new.id}"
    response = post(rene, f"/renter/tasks/{new.id}/delete")
    assert "Stop the task" in text(rene.get(response.headers["Location"]))
    response = post(rene, f"/renter/tasks/{task_id}/delete")
    assert response.headers["Location"] == "/renter/tasks"
    assert rene.get(f"/renter/tasks/{task_id}").status_code == 404
    with app.app_context():
        assert Task.get_by_id(task_id).deleted and not Task.get_by_id(new.id).deleted


def task_urls(task_id):
    """Every page, partial and action of a task: (method, path, headers)."""
    partial = {"HX-Request": "true", "HX-Target": "task-detail"}
    return [("GET", f"/renter/tasks/{task_id}", {}), ("GET", f"/renter/tasks/{task_id}", partial),
            ("GET", f"/renter/tasks/new?from={task_id}", {}),
            ("POST", f"/renter/tasks/{task_id}/stop", {}),
            ("POST", f"/renter/tasks/{task_id}/rerun", {}),
            ("POST", f"/renter/tasks/{task_id}/delete", {})]


def test_another_renter_gets_404_for_every_task_url(client, world, app):
    task_id = make_task(app)
    with app.app_context():
        set_state(task_id, "succeeded", exit_code=0)
    login(client, "renter", "rita", PASSWORD)
    token = csrf_token(client, "/renter/tasks/new")
    for method, path, headers in task_urls(task_id):
        response = client.open(path, method=method, headers=headers,
                               data={"csrf_token": token} if method == "POST" else None)
        assert response.status_code == 404, (method, path)
    assert f'data-task="{task_id}"' not in text(client.get("/renter/tasks"))
    with app.app_context():
        assert counts()[0] == 1 and not Task.get_by_id(task_id).deleted


def test_every_post_needs_the_csrf_token(rene, app):
    task_id = make_task(app)
    with app.app_context():
        set_state(task_id, "succeeded", exit_code=0)
    posts = [("/renter/tasks", FORM)] + [
        (path, {}) for method, path, _h in task_urls(task_id) if method == "POST"]
    for path, data in posts:
        for token in (None, "forged"):
            sent = {**data, "csrf_token": token} if token else data
            assert rene.post(path, data=sent).status_code == 400, path
    with app.app_context():
        assert counts()[0] == 1 and not Task.get_by_id(task_id).deleted


def test_a_miner_may_not_open_the_task_pages(client, world, app):
    task_id = make_task(app)
    login(client, "miner", "mina", PASSWORD)
    for path in ("/renter/tasks", "/renter/tasks/new", f"/renter/tasks/{task_id}"):
        assert client.get(path).status_code == 403
