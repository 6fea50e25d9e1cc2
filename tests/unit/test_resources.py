"""Custom resources, specs and pools: the rules, the miner's three pages, the renter's overview.

Nodes and chips are inserted as rows, standing for what discovery found;
everything else goes through the real rules, forms and SQLite database.
"""

import re

import pytest

from portal import settings
from portal.access import open_pools, open_specs
from portal.db import database
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
from portal.pools import (
    create_pool,
    default_pool,
    delete_pool,
    move_node,
    pool_views,
    set_pool_groups,
    update_pool,
)
from portal.specs import (
    KNOWN_KINDS,
    count_field,
    create_resource,
    delete_resource,
    delete_spec,
    parse_spec,
    resource_kinds,
    save_spec,
    set_spec_enabled,
    suggest_name,
    update_resource,
)
from portal.units import (
    MAX_CPU_MILLIS,
    MAX_MEMORY_MIB,
    ResourceError,
    clean_text,
    format_cores,
    format_gb,
    parse_cores,
    parse_count,
    parse_memory_gb,
    parse_price,
)
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

BM1684X = "sophgo.com/bm1684x"


def add_node(name, cores=8, gb=16, chips=None, ready=True, cordoned=False, pool=None):
    """A node as discovery would leave it; ``chips`` is ``{kind: count}``."""
    node = Node.create(name=name, url=f"unix:///run/{name}.sock", cpu_millis=cores * 1000,
                       memory_mib=gb * 1024, ready=ready, cordoned=cordoned, pool=pool)
    for kind, count in (chips or {}).items():
        for index in range(count):
            NodeChip.create(node=node, kind=kind, index=index, device=f"/dev/chip{index}")
    return node


def make_spec(name, cores, gb, price="1", **counts):
    """A spec through the rules; ``counts`` maps custom resource names to counts."""
    resources = {r.name: r for r in CustomResource.select()}
    values = parse_spec(name, str(cores), str(gb), price,
                              {resources[n.replace("_", " ")]: str(c) for n, c in counts.items()})
    return save_spec(None, values)


@pytest.fixture
def ctx(app):
    """An app context for tests of the rules alone (their messages are translated).
    Tests making requests hold none: a request would reuse it, and its ``g``."""
    with app.app_context():
        yield app


@pytest.fixture
def tpu(app):
    with app.app_context():
        return create_resource("TPU 1684X", BM1684X, "Sophgo SC7 chips")


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/miner/specs")})


def text(response):
    return response.get_data(as_text=True)


def errors_of(call, *args, **kwargs):
    with pytest.raises(ResourceError) as info:
        call(*args, **kwargs)
    return info.value.errors


# --- typed values ------------------------------------------------------------------------


def test_numbers_convert_exactly():
    assert parse_cores("0.5") == 500
    assert parse_cores(" 4 ") == 4000
    assert parse_cores("1024") == MAX_CPU_MILLIS
    assert parse_memory_gb("2") == 2048
    assert parse_memory_gb("0.5") == 512
    assert parse_memory_gb("16384") == MAX_MEMORY_MIB
    assert parse_count("", "c") == 0 and parse_count(None, "c") == 0
    assert parse_count("2.0", "c") == 2
    assert format_cores(1250) == "1.25" and format_cores(4000) == "4"
    assert format_gb(512) == "0.5" and format_gb(15936, 1) == "15.6"
    assert format_gb(40 * 1024) == "40"


@pytest.mark.parametrize("value, message", [
    ("", "Enter CPU cores as a number"), ("four", "Enter CPU cores as a number"),
    ("nan", "as a number"), ("inf", "as a number"), (True, "as a number"),
    ("0", "greater than zero"), ("-1", "greater than zero"), ("1025", "at most 1024"),
    ("1e400", "too large"), ("9" * 5000, "too large"),
    ("0.0001", "CPU cores is too fine: use steps of 0.001."),
])
def test_bad_cpu_cores_are_refused(ctx, value, message):
    assert message in errors_of(parse_cores, value)["cpu"]


@pytest.mark.parametrize("value, message", [
    ("x", "Enter Memory in GB as a number"), ("0", "greater than zero"),
    ("-2", "greater than zero"), ("16385", "at most 16384"),
    ("0.0001", "use steps of 1 MiB (1/1024 GB)"),
])
def test_bad_memory_is_refused(ctx, value, message):
    assert message in errors_of(parse_memory_gb, value)["memory"]


@pytest.mark.parametrize("value", ["-1", "1.5", "two", "1025", "1e9"])
def test_bad_chip_counts_are_refused(ctx, value):
    assert "c" in errors_of(parse_count, value, "c")


@pytest.mark.parametrize("value, message", [
    ("", "Enter an amount"), ("0", "greater than zero"), ("-5", "greater than zero"),
    ("1.1234567", "6 decimal places"), ("1000001", "too large"), ("ten", "Enter an amount"),
])
def test_bad_prices_are_refused(ctx, value, message):
    assert message in errors_of(parse_price, value)["price"]


def test_names_keep_html_and_unicode_but_not_control_characters(ctx):
    assert clean_text(" <b>张量</b> ", "name", 64) == "<b>张量</b>"
    assert "control characters" in errors_of(clean_text, "a\nb", "name", 64)["name"]
    assert "At most 64" in errors_of(clean_text, "x" * 65, "name", 64)["name"]
    assert "Enter a name" in errors_of(clean_text, "   ", "name", 64)["name"]


def test_suggested_names_follow_the_seed(ctx, tpu):
    other = create_resource("GPU", "nvidia.com/gpu")
    assert suggest_name(4000, 2048, [(tpu, 2)]) == "4 CPU-2 GB-2 TPU 1684X"
    assert suggest_name(500, 512, [(tpu, 0), (other, 0)]) == "0.5 CPU-0.5 GB"
    assert suggest_name(1000, 1024, [(tpu, 1), (other, 3)]) == "1 CPU-1 GB-3 GPU-1 TPU 1684X"


# --- custom resources --------------------------------------------------------------------


def test_resource_kinds_are_discovered_and_known(ctx):
    assert resource_kinds() == sorted(KNOWN_KINDS)
    add_node("n1", chips={"example.com/npu": 1, BM1684X: 1})
    assert resource_kinds() == ["example.com/npu", BM1684X, "nvidia.com/gpu",
                                      "sophgo.com/bm1684"]
    resource = create_resource("NPU", "example.com/npu")
    assert resource.kind == "example.com/npu"
    assert "Choose a system resource" in errors_of(create_resource, "X", "cpu")["kind"]


def test_custom_resource_names_are_unique_and_kind_is_fixed(ctx, tpu):
    assert "taken" in errors_of(create_resource, "TPU 1684X", "nvidia.com/gpu")["name"]
    update_resource(tpu, "TPU X", "renamed")
    tpu = CustomResource.get_by_id(tpu.id)
    assert (tpu.name, tpu.kind, tpu.description) == ("TPU X", BM1684X, "renamed")
    create_resource("GPU", "nvidia.com/gpu")
    assert "taken" in errors_of(update_resource, tpu, "GPU")["name"]
    assert CustomResource.get_by_id(tpu.id).name == "TPU X"


def test_a_used_custom_resource_cannot_be_deleted(ctx, tpu):
    make_spec("small", 1, 1, TPU_1684X=1)
    errors = errors_of(delete_resource, tpu)
    assert errors[None] == ("'TPU 1684X' is used by 1 spec (small). Take it out of those specs "
                            "first.")
    assert CustomResource.select().count() == 1 and SpecResource.select().count() == 1
    delete_spec(ResourceSpec.get(ResourceSpec.name == "small"))
    delete_resource(tpu)
    assert CustomResource.select().count() == 0


# --- specs -------------------------------------------------------------------------------


def test_a_spec_with_an_empty_name_takes_the_suggestion(ctx, tpu):
    spec = make_spec("", "4", "2", "12.5", TPU_1684X=2)
    assert (spec.name, spec.cpu_millis, spec.memory_mib, spec.price_per_hour) == (
        "4 CPU-2 GB-2 TPU 1684X", 4000, 2048, 12_500_000)
    assert [(r.resource.name, r.count) for r in spec.resources] == [("TPU 1684X", 2)]


def test_every_bad_field_is_reported_at_once(ctx, tpu):
    errors = errors_of(parse_spec, "x" * 97, "0", "abc", "-1", {tpu: "1.5"})
    assert set(errors) == {"name", "cpu", "memory", "price", count_field(tpu)}


def test_a_spec_bigger_than_every_node_is_refused(ctx, tpu):
    make_spec("fits anywhere", 64, 512, TPU_1684X=8)  # no node known yet: accepted
    add_node("small", cores=4, gb=8, chips={BM1684X: 3})
    add_node("big", cores=16, gb=64, chips={BM1684X: 6}, ready=False)
    errors = errors_of(make_spec, "too big", 32, 128, "1", TPU_1684X=8)
    assert errors == {
        "cpu": "No node has 32 CPU cores; the largest has 16.",
        "memory": "No node has 128 GB of memory; the largest has 64 GB.",
        count_field(tpu): "No node has 8 TPU 1684X; the largest has 6.",
    }
    # Each part fits some node, but no node has all of it at once.
    add_node("cpu-only", cores=64, gb=256)
    errors = errors_of(make_spec, "lopsided", 32, 8, "1", TPU_1684X=6)
    assert errors == {None: "No single node has all of this at once."}
    assert ResourceSpec.select().count() == 1


def test_custom_resources_over_one_kind_add_up(ctx, tpu):
    other = create_resource("TPU alias", BM1684X)
    add_node("n1", chips={BM1684X: 6})
    values = parse_spec("both", "1", "1", "1", {tpu: "3", other: "4"})
    errors = errors_of(save_spec, None, values)
    assert errors == {count_field(tpu): "No node has 7 TPU 1684X + TPU alias; the "
                                               "largest has 6."}


def test_a_refused_update_changes_nothing(ctx, tpu):
    add_node("n1", chips={BM1684X: 6})
    spec = make_spec("s", 2, 4, "3", TPU_1684X=2)
    make_spec("taken", 1, 1)
    for counts in ({tpu: "7"}, {tpu: "0"}):
        values = parse_spec("taken" if counts[tpu] == "0" else "s", "1", "1", "9", counts)
        with pytest.raises(ResourceError):
            save_spec(ResourceSpec.get_by_id(spec.id), values)
        again = ResourceSpec.get_by_id(spec.id)
        assert (again.name, again.cpu_millis, again.price_per_hour) == ("s", 2000, 3_000_000)
        assert [(r.resource_id, r.count) for r in again.resources] == [(tpu.id, 2)]


def test_disable_enable_and_delete_a_spec(ctx, tpu):
    spec = make_spec("s", 1, 1, TPU_1684X=1)
    set_spec_enabled(spec, False)
    assert ResourceSpec.get_by_id(spec.id).enabled is False
    set_spec_enabled(spec, True)
    assert ResourceSpec.get_by_id(spec.id).enabled is True
    delete_spec(spec)
    assert ResourceSpec.select().count() == 0 and SpecResource.select().count() == 0


# --- pools -------------------------------------------------------------------------------


def test_the_default_pool_cannot_be_renamed_or_deleted(ctx):
    default = default_pool()
    assert "cannot be renamed" in errors_of(update_pool, default, "main")["name"]
    update_pool(default, "default", "every node not elsewhere")
    assert default_pool().description == "every node not elsewhere"
    assert "cannot be deleted" in errors_of(delete_pool, default)[None]
    assert Pool.select().count() == 1


def test_deleting_a_pool_returns_its_nodes_to_the_default_pool(ctx):
    lab = create_pool("Lab-A", "the lab's box")
    assert "taken" in errors_of(create_pool, "Lab-A")["name"]
    group = Group.create(name="lab-a")
    node = add_node("n1")
    move_node(node, lab)
    set_pool_groups(lab, {group.id})
    assert Node.get_by_id(node.id).pool_id == lab.id
    delete_pool(lab)
    assert Node.get_by_id(node.id).pool_id is None
    assert PoolGroup.select().count() == 0 and Pool.select().count() == 1
    assert "no longer exists" in errors_of(set_pool_groups, default_pool(),
                                           {group.id, 999})[None]


def test_a_pool_with_waiting_or_running_work_is_not_deleted(ctx):
    from portal.models import Replica, Subtask, Task
    from portal.users import create_user

    lab = create_pool("Lab-A")
    spec = make_spec("tiny", 1, 1)
    renter = create_user("rene", "renter", "a-long-password")
    task = Task.create(user=renter, name="t", image="busybox", pool=lab)
    subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
    replica = Replica.create(task=task, subtask=subtask, index=0, state="running")
    assert "still has 1 task(s)" in errors_of(delete_pool, lab)[None]
    assert Pool.select().count() == 2
    Replica.update(state="succeeded").where(Replica.id == replica.id).execute()
    delete_pool(lab)  # only history left: it stays, under the default pool
    assert Task.get_by_id(task.id).pool_id == default_pool().id


def test_pool_capacity_and_the_specs_that_fit(ctx, tpu):
    lab = create_pool("Lab-A")
    add_node("a1", cores=8, gb=16, chips={BM1684X: 6}, pool=lab)
    add_node("a2", cores=4, gb=8, chips={BM1684X: 3}, pool=lab, cordoned=True)
    add_node("d1", cores=2, gb=4)
    add_node("d2", cores=64, gb=256, ready=False)
    make_spec("tiny", 1, 1)
    make_spec("tpu", 4, 2, TPU_1684X=2)
    make_spec("huge", 32, 128)
    views = {view.pool.name: view for view in pool_views()}
    assert views["Lab-A"].capacity == {"cpu": 12000, "memory": 24576, BM1684X: 9}
    assert [n.node.name for n in views["default"].nodes] == ["d1", "d2"]
    assert [s.spec.name for s in views["Lab-A"].specs] == ["tiny", "tpu"]
    assert [s.spec.name for s in views["default"].specs] == ["tiny"]  # d2 is NotReady


# --- what a renter may use ---------------------------------------------------------------


def renter(name, *groups):
    user = create_user(name, "renter", PASSWORD)
    for group in groups:
        Membership.create(user=user, group=Group.get_or_create(name=group)[0])
    return user


def names(items):
    return [item.pool.name for item in items]


def test_renters_use_the_default_pool_and_the_pools_of_their_groups(ctx, tpu):
    rene, carol = renter("rene"), renter("carol", "lab-a")
    lab, closed = create_pool("Lab-A"), create_pool("Closed")
    set_pool_groups(lab, {Group.get(Group.name == "lab-a").id})
    add_node("a1", chips={BM1684X: 6}, pool=lab)
    add_node("d1")
    add_node("c1", chips={BM1684X: 6}, pool=closed)
    make_spec("tiny", 1, 1)
    make_spec("tpu", 4, 2, TPU_1684X=2)
    make_spec("off", 1, 1)
    set_spec_enabled(ResourceSpec.get(ResourceSpec.name == "off"), False)

    assert names(open_pools(rene)) == ["default"]
    assert names(open_pools(carol)) == ["default", "Lab-A"]
    assert [(s.spec.name, names(w)) for s, w in open_specs(rene)] == [
        ("tiny", ["default"])]
    assert [(s.spec.name, names(w)) for s, w in open_specs(carol)] == [
        ("tiny", ["default", "Lab-A"]), ("tpu", ["Lab-A"])]

    # Restricting the default pool to lab-b shuts rene out of everything.
    set_pool_groups(default_pool(), {Group.create(name="lab-b").id})
    assert open_pools(rene) == [] and open_specs(rene) == []
    assert names(open_pools(carol)) == ["Lab-A"]


# --- the pages ---------------------------------------------------------------------------


def test_resources_page_lists_nodes_totals_and_custom_resources(app, miner):
    from portal.models import NodeChip, Replica, ReplicaChip, Subtask, Task, User

    with app.app_context():
        node_a = add_node("node-a", cores=8, gb=16, chips={BM1684X: 6})
        add_node("node-b", cores=4, gb=8, chips={"nvidia.com/gpu": 2}, ready=False)
        # A running replica of a 2-core, 1 GB spec holding two of node-a's chips.
        spec = ResourceSpec.create(name="s", cpu_millis=2000, memory_mib=1024, price_per_hour=1)
        task = Task.create(user=User.get(User.role == "renter"), name="t", image="busybox",
                           pool=default_pool())
        subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
        replica = Replica.create(task=task, subtask=subtask, index=0, state="running",
                                 node=node_a)
        for slot, chip in enumerate(NodeChip.select().where(NodeChip.node == node_a).limit(2)):
            ReplicaChip.create(replica=replica, chip=chip, slot=slot)
    html = text(miner.get("/miner/resources"))
    assert "No node has been discovered yet." not in html
    total = re.search(r"<tfoot>(.*?)</tfoot>", html, re.S).group(1)
    assert re.findall(r"<th>([^<]*)</th>", total) == [
        "Total", "2 nodes", "2 / 12", "1 / 24", "0 / 2", "2 / 6"]
    row = re.search(r'<tr data-node="node-a">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r"<td>([^<]*)</td>", row)[-4:] == ["2 / 8", "1 / 16", "0 / 0", "2 / 6"]
    assert "in use / capacity" in html
    response = post(miner, "/miner/resources", name="<b>TPU</b> 张量", kind=BM1684X,
                    description="SC7")
    assert response.status_code == 303
    html = text(miner.get("/miner/resources"))
    assert "&lt;b&gt;TPU&lt;/b&gt; 张量" in html and "<b>TPU</b>" not in html
    assert "Created custom resource" in html


@pytest.mark.parametrize("data, message", [
    ({"name": "", "kind": BM1684X}, "Enter a name."),
    ({"name": "x" * 65, "kind": BM1684X}, "At most 64 characters."),
    ({"name": "a\tb", "kind": BM1684X}, "control characters"),
    ({"name": "NPU", "kind": "example.com/unknown"}, "Choose a system resource"),
    ({"name": "NPU", "kind": BM1684X, "description": "d" * 257}, "At most 256 characters."),
    ({"name": "TPU 1684X", "kind": "nvidia.com/gpu"}, "The name &#39;TPU 1684X&#39; is taken."),
])
def test_bad_custom_resources_are_refused(app, miner, tpu, data, message):
    response = post(miner, "/miner/resources", **data)
    assert response.status_code == 400
    assert message in text(response)
    assert response.headers["HX-Push-Url"] == "/miner/resources"
    assert CustomResource.select().count() == 1


def test_edit_and_delete_custom_resources_on_the_page(app, miner, tpu):
    html = text(miner.get(f"/miner/resources?edit={tpu.id}"))
    assert 'value="TPU 1684X"' in html and "Edit TPU 1684X" in html
    response = post(miner, f"/miner/resources/{tpu.id}", name="", description="x")
    assert response.status_code == 400 and "Enter a name." in text(response)
    assert response.headers["HX-Push-Url"] == f"/miner/resources?edit={tpu.id}"
    assert post(miner, f"/miner/resources/{tpu.id}", name="TPU X",
                description="new").status_code == 303
    assert CustomResource.get_by_id(tpu.id).name == "TPU X"

    make_spec("s", 1, 1, TPU_X=1)
    response = post(miner, f"/miner/resources/{tpu.id}/delete")
    assert response.status_code == 409
    assert "&#39;TPU X&#39; is used by 1 spec (s)." in text(response)
    delete_spec(ResourceSpec.get(ResourceSpec.name == "s"))
    assert post(miner, f"/miner/resources/{tpu.id}/delete").status_code == 303
    assert CustomResource.select().count() == 0
    for path in (f"/miner/resources/{tpu.id}/delete", f"/miner/resources/{2**70}",
                 f"/miner/resources/{tpu.id}"):
        assert post(miner, path, name="y").status_code == 404
    assert miner.get(f"/miner/resources?edit={tpu.id}").status_code == 404
    assert miner.get("/miner/resources?edit=abc").status_code == 200


def spec_form(tpu, **data):
    return {"name": "", "cpu": "4", "memory": "2", "price": "12.5",
            count_field(tpu): "2", **data}


def test_miner_creates_edits_and_toggles_a_spec(app, miner, tpu):
    with app.app_context():
        add_node("n1", chips={BM1684X: 6})
    assert post(miner, "/miner/specs", **spec_form(tpu)).status_code == 303
    spec = ResourceSpec.get()
    assert (spec.name, spec.price_per_hour) == ("4 CPU-2 GB-2 TPU 1684X", 12_500_000)
    html = text(miner.get("/miner/specs"))
    assert "12.50 UNC" in html and "2 × TPU 1684X" in html and "unfit" not in html

    html = text(miner.get(f"/miner/specs?edit={spec.id}"))
    assert 'value="12.50"' in html and 'value="4"' in html and 'value="2"' in html
    response = post(miner, f"/miner/specs/{spec.id}",
                    **spec_form(tpu, name="big", cpu="0.5", price="1234.5"))
    assert response.status_code == 303
    spec = ResourceSpec.get_by_id(spec.id)
    assert (spec.name, spec.cpu_millis, spec.price_per_hour) == ("big", 500, 1_234_500_000)
    assert 'value="1234.50"' in text(miner.get(f"/miner/specs?edit={spec.id}"))

    assert post(miner, f"/miner/specs/{spec.id}/enabled", enabled="0").status_code == 303
    assert ResourceSpec.get_by_id(spec.id).enabled is False
    assert post(miner, f"/miner/specs/{spec.id}/enabled", enabled="yes").status_code == 400
    assert ResourceSpec.get_by_id(spec.id).enabled is False
    assert post(miner, f"/miner/specs/{spec.id}/delete").status_code == 303
    assert ResourceSpec.select().count() == 0


def test_the_suggestion_live_and_on_the_button(app, miner, tpu):
    field = count_field(tpu)
    html = text(miner.get(f"/miner/specs/suggestion?cpu=0.5&memory=1.5&{field}=3"))
    assert "0.5 CPU-1.5 GB-3 TPU 1684X" in html
    assert "appears once" in text(miner.get("/miner/specs/suggestion?cpu=x&memory=1"))
    response = post(miner, "/miner/specs", action="suggest", **spec_form(tpu, price=""))
    assert response.status_code == 200
    assert 'value="4 CPU-2 GB-2 TPU 1684X"' in text(response)
    response = post(miner, "/miner/specs", action="suggest", **spec_form(tpu, cpu="0"))
    assert response.status_code == 400 and "Enter CPU cores and memory first" in text(response)
    assert ResourceSpec.select().count() == 0


@pytest.mark.parametrize("data, message", [
    ({"cpu": "0"}, "CPU cores must be greater than zero."),
    ({"cpu": "-1"}, "greater than zero"),
    ({"cpu": "four"}, "Enter CPU cores as a number"),
    ({"cpu": "2000"}, "too large"),
    ({"cpu": "9" * 5000}, "too large"),
    ({"memory": "0"}, "greater than zero"),
    ({"memory": "99999"}, "too large"),
    ({"price": ""}, "Enter an amount"),
    ({"price": "0"}, "greater than zero"),
    ({"price": "1.1234567"}, "6 decimal places"),
    ({"count": "-1"}, "whole number of chips"),
    ({"count": "1.5"}, "whole number of chips"),
    ({"count": "5000"}, "At most 1024 chips."),
    ({"count": "8"}, "No node has 8 TPU 1684X; the largest has 6."),
    ({"cpu": "64"}, "No node has 64 CPU cores; the largest has 8."),
    ({"name": "n" * 97}, "At most 96 characters."),
    ({"name": "two\nlines"}, "control characters"),
    ({"name": "taken"}, "The name &#39;taken&#39; is taken."),
])
def test_bad_specs_are_refused(app, miner, tpu, data, message):
    with app.app_context():
        add_node("n1", cores=8, gb=16, chips={BM1684X: 6})
        make_spec("taken", 1, 1)
    if "count" in data:
        data[count_field(tpu)] = data.pop("count")
    response = post(miner, "/miner/specs", **spec_form(tpu, **data))
    assert response.status_code == 400
    assert message in text(response)
    assert ResourceSpec.select().count() == 1 and SpecResource.select().count() == 0


def test_a_spec_no_ready_node_can_hold_is_flagged(app, miner, tpu):
    with app.app_context():
        add_node("n1", chips={BM1684X: 6}, cordoned=True)
        add_node("n2")
        make_spec("chips", 1, 1, TPU_1684X=1)
        make_spec("plain", 1, 1)
    html = text(miner.get("/miner/specs"))
    row = re.search(r'<tr data-spec="chips">(.*?)</tr>', html, re.S).group(1)
    assert "No Ready, uncordoned node can hold it." in row
    row = re.search(r'<tr data-spec="plain">(.*?)</tr>', html, re.S).group(1)
    assert "uncordoned" not in row


def test_miner_manages_pools_on_the_page(app, miner):
    with app.app_context():
        node = add_node("n1", chips={BM1684X: 6})
        group = Group.create(name="lab-a")
        default = default_pool()
    assert post(miner, "/miner/pools", name="Lab-A", description="<i>lab</i>").status_code == 303
    lab = Pool.get(Pool.name == "Lab-A")
    assert post(miner, f"/miner/pools/nodes/{node.id}", pool=str(lab.id)).status_code == 303
    assert post(miner, f"/miner/pools/{lab.id}/groups", groups=[str(group.id)]).status_code == 303
    html = text(miner.get("/miner/pools"))
    section = html[html.index('data-pool="Lab-A"'):]
    assert "&lt;i&gt;lab&lt;/i&gt;" in section and 'data-node="n1"' in section
    assert f'value="{group.id}" checked' in section
    assert Node.get_by_id(node.id).pool_id == lab.id

    response = post(miner, f"/miner/pools/{default.id}", name="main")
    assert response.status_code == 400 and "cannot be renamed" in text(response)
    response = post(miner, f"/miner/pools/{default.id}/delete")
    assert response.status_code == 409 and "cannot be deleted" in text(response)
    assert post(miner, f"/miner/pools/{lab.id}", name="Lab-B").status_code == 303
    assert post(miner, f"/miner/pools/{lab.id}/delete").status_code == 303
    assert Node.get_by_id(node.id).pool_id is None
    assert [p.name for p in Pool.select()] == ["default"]


@pytest.mark.parametrize("path, data, message", [
    ("/miner/pools", {"name": ""}, "Enter a name."),
    ("/miner/pools", {"name": "default"}, "is taken"),
    ("/miner/pools", {"name": "p" * 65}, "At most 64 characters."),
    ("/miner/pools", {"name": "ok", "description": "d\x00"}, "control characters"),
    ("/miner/pools/nodes/{node}", {"pool": "abc"}, "Choose a pool from the list."),
    ("/miner/pools/nodes/{node}", {"pool": "999"}, "Choose a pool from the list."),
    ("/miner/pools/nodes/{node}", {"pool": "²"}, "Choose a pool from the list."),
    ("/miner/pools/nodes/{node}", {"pool": "9" * 40}, "Choose a pool from the list."),
    ("/miner/pools/{pool}/groups", {"groups": ["x"]}, "Choose groups from the list."),
    ("/miner/pools/{pool}/groups", {"groups": ["999"]}, "no longer exists"),
])
def test_bad_pool_input_is_refused(app, miner, path, data, message):
    with app.app_context():
        node = add_node("n1")
        pool = default_pool()
    response = post(miner, path.format(node=node.id, pool=pool.id), **data)
    assert response.status_code == 400
    assert message in text(response)
    assert Pool.select().count() == 1 and PoolGroup.select().count() == 0
    assert Node.get_by_id(node.id).pool_id is None


def test_missing_objects_are_404(miner):
    for path in ("/miner/pools/99/delete", "/miner/pools/nodes/99", "/miner/specs/99",
                 "/miner/specs/99/enabled", "/miner/specs/99/delete", f"/miner/pools/{2**64}"):
        assert post(miner, path, enabled="1").status_code == 404, path
    assert miner.get("/miner/specs?edit=99").status_code == 404
    assert miner.get("/miner/pools?edit=99").status_code == 404


def test_renters_cannot_use_the_miner_pages(client, accounts):
    login(client, "renter", "rene", PASSWORD)
    for path in ("/miner/resources", "/miner/specs", "/miner/pools", "/miner/specs/suggestion"):
        assert client.get(path).status_code == 403


def test_renter_overview_lists_open_specs_with_the_currency(app, client, accounts, tpu):
    add_node("n1", chips={BM1684X: 6})
    make_spec("", 4, 2, "12.5", TPU_1684X=2)
    settings.put("currency", "CNY")
    login(client, "renter", "rene", PASSWORD)
    html = text(client.get("/renter/"))
    row = re.search(r'<tr data-spec="4 CPU-2 GB-2 TPU 1684X">(.*?)</tr>', html, re.S).group(1)
    assert "12.50 CNY" in row and "2 × TPU 1684X" in row and "default" in row
    assert 'data-pool="default"' in html

    set_pool_groups(default_pool(), {Group.create(name="lab-b").id})
    html = text(client.get("/renter/"))
    assert "No spec is open to you yet" in html and "No pool is open to you yet." in html


# --- queries -----------------------------------------------------------------------------


def queries_for(client, path):
    """How many SQL statements serving ``path`` runs (the request reuses this connection)."""
    statements = []
    database.connect(reuse_if_open=True)
    database.connection().set_trace_callback(statements.append)
    assert client.get(path).status_code == 200
    return len(statements)


def test_list_pages_query_a_fixed_number_of_times(app, client, accounts, tpu):
    login(client, "renter", "rene", PASSWORD)
    miner = app.test_client()
    login(miner, "miner", "mina", PASSWORD)
    pages = [(miner, p) for p in ("/miner/resources", "/miner/specs", "/miner/pools")]
    pages.append((client, "/renter/"))

    def grow(n):
        pool = create_pool(f"pool-{n}")
        set_pool_groups(pool, {Group.create(name=f"group-{n}").id})
        add_node(f"node-{n}", chips={BM1684X: 3}, pool=pool if n % 2 else None)
        make_spec(f"spec-{n}", 1, 1, TPU_1684X=1)

    grow(0)
    before = [queries_for(c, p) for c, p in pages]
    for n in range(1, 8):
        grow(n)
    assert [queries_for(c, p) for c, p in pages] == before
