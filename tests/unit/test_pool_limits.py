"""The miner's per-user limits in a pool: the rules, the Pools page form, the API.

Real SQLite, real forms with real CSRF tokens, real API tokens. The limits are
what the scheduler's placement reads (``scheduler.inventory``); the
integration test ``test_scheduler_stress`` shows a renter held back by one.
"""

import re

import pytest

from portal.api.pools import POOL
from portal.models import Pool, PoolLimit
from portal.pools import (
    PoolLimits,
    create_pool,
    default_pool,
    delete_pool,
    parse_limit,
    pool_limits,
    pool_views,
    set_pool_limits,
)
from portal.tokens import create_token
from portal.units import ResourceError
from scheduler import inventory
from scheduler.placement import Limits
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

BAD = ["-1", "10001", "1.5", "2.0", "1e3", "+2", "abc", "٣", "1 2", "9" * 40]
BAD_MESSAGE = "Enter a whole number from 0 to 10000, or leave it empty for no limit."


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def limits_row(pool):
    row = PoolLimit.get_or_none(PoolLimit.pool == pool)
    return None if row is None else (row.max_chips_per_user, row.max_replicas_per_user)


# --- the rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("typed, value", [
    ("", None), ("  ", None), (None, None), ("0", 0), (" 2 ", 2), ("10000", 10000),
    (7, 7), (0, 0)])
def test_a_limit_is_empty_or_a_whole_number_up_to_10000(ctx, typed, value):
    assert parse_limit(typed, "max_chips_per_user") == value


@pytest.mark.parametrize("typed", [*BAD, -1, 10001, 1.0, True, [], {}])
def test_anything_else_is_refused_naming_the_field(ctx, typed):
    with pytest.raises(ResourceError) as info:
        parse_limit(typed, "max_replicas_per_user")
    assert info.value.errors == {"max_replicas_per_user": BAD_MESSAGE}


def test_set_change_one_keep_the_other_and_clear(ctx):
    lab = create_pool("Lab-A")
    default = default_pool()
    assert pool_limits(lab) == PoolLimits() and limits_row(lab) is None
    assert set_pool_limits(lab, max_chips_per_user="2", max_replicas_per_user="") == (
        PoolLimits(2, None))
    assert limits_row(lab) == (2, None) and limits_row(default) is None
    assert set_pool_limits(lab, max_replicas_per_user=3) == PoolLimits(2, 3)
    assert set_pool_limits(lab, max_chips_per_user=None) == PoolLimits(None, 3)
    assert set_pool_limits(lab) == PoolLimits(None, 3)  # nothing named, nothing changed
    set_pool_limits(lab, max_replicas_per_user="")
    assert limits_row(lab) is None  # no limit at all keeps no row
    assert PoolLimit.select().count() == 0


def test_a_bad_value_saves_nothing_and_both_errors_come_together(ctx):
    lab = create_pool("Lab-A")
    set_pool_limits(lab, max_chips_per_user=4)
    with pytest.raises(ResourceError) as info:
        set_pool_limits(lab, max_chips_per_user="1", max_replicas_per_user="x")
    assert set(info.value.errors) == {"max_replicas_per_user"}
    with pytest.raises(ResourceError) as info:
        set_pool_limits(lab, max_chips_per_user="-1", max_replicas_per_user="x")
    assert set(info.value.errors) == {"max_chips_per_user", "max_replicas_per_user"}
    assert limits_row(lab) == (4, None)
    with pytest.raises(TypeError):
        set_pool_limits(lab, max_gpus=1)


def test_pool_views_carry_the_limits_and_the_scheduler_reads_them(ctx):
    lab = create_pool("Lab-A")
    default = default_pool()
    set_pool_limits(lab, max_chips_per_user=0, max_replicas_per_user=5)
    views = {view.pool.name: view.limits for view in pool_views()}
    assert views == {"default": PoolLimits(), "Lab-A": PoolLimits(0, 5)}
    _usage, limits = inventory.usage_and_limits({})
    assert limits == {lab.id: Limits(max_chips=0, max_replicas=5)}
    assert default.id not in limits


def test_deleting_a_pool_deletes_its_limits(ctx):
    lab = create_pool("Lab-A")
    set_pool_limits(lab, max_chips_per_user=1)
    delete_pool(lab)
    assert PoolLimit.select().count() == 0


# --- the Pools page ------------------------------------------------------------------------


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def save_limits(client, pool_id, chips, replicas, token=True):
    data = {"max_chips_per_user": chips, "max_replicas_per_user": replicas}
    if token:
        data["csrf_token"] = csrf_token(client, "/miner/pools")
    return client.post(f"/miner/pools/{pool_id}/limits", data=data)


def limits_form(html, pool_id):
    """The limits form of one pool on the page, as HTML."""
    match = re.search(rf'action="/miner/pools/{pool_id}/limits".*?</form>', html, re.S)
    assert match, f"no limits form for pool {pool_id}"
    return match.group(0)


def input_value(form, pool_id, name):
    match = re.search(rf'<input[^>]*id="pool-{pool_id}-{name}"[^>]*>', form)
    assert match, name
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def test_the_miner_sets_and_clears_limits_per_pool(app, miner):
    with app.app_context():
        lab = create_pool("Lab-A")
        default = default_pool()
    html = miner.get("/miner/pools").get_data(as_text=True)
    assert input_value(limits_form(html, lab.id), lab.id, "max_chips_per_user") == ""
    assert 'placeholder="no limit"' in limits_form(html, lab.id)

    response = save_limits(miner, lab.id, "2", "")
    assert response.status_code == 303 and response.location.endswith("/miner/pools")
    html = miner.get("/miner/pools").get_data(as_text=True)
    assert "Limits of pool &#39;Lab-A&#39; saved." in html
    form = limits_form(html, lab.id)
    assert input_value(form, lab.id, "max_chips_per_user") == "2"
    assert input_value(form, lab.id, "max_replicas_per_user") == ""
    assert input_value(limits_form(html, default.id), default.id, "max_chips_per_user") == ""
    assert save_limits(miner, default.id, " 0 ", "10000").status_code == 303
    with app.app_context():
        assert limits_row(lab) == (2, None) and limits_row(default) == (0, 10000)

    assert save_limits(miner, lab.id, "", "").status_code == 303
    with app.app_context():
        assert limits_row(lab) is None and limits_row(default) == (0, 10000)


@pytest.mark.parametrize("typed", BAD)
def test_a_bad_limit_is_shown_next_to_its_field_and_saves_nothing(app, miner, typed):
    with app.app_context():
        lab = create_pool("Lab-A")
        set_pool_limits(lab, max_chips_per_user=3)
    response = save_limits(miner, lab.id, "1", typed)
    assert response.status_code == 400
    assert response.headers["HX-Push-Url"] == "/miner/pools"
    form = limits_form(response.get_data(as_text=True), lab.id)
    assert BAD_MESSAGE in form and 'aria-invalid="true"' in form
    assert input_value(form, lab.id, "max_chips_per_user") == "1"  # kept as typed
    with app.app_context():
        assert limits_row(lab) == (3, None)


def test_limits_need_the_csrf_token_and_a_pool_that_exists(app, miner):
    with app.app_context():
        lab = create_pool("Lab-A")
    assert save_limits(miner, lab.id, "2", "2", token=False).status_code == 400
    with app.app_context():
        assert limits_row(lab) is None
    assert save_limits(miner, 999, "2", "2").status_code == 404
    assert save_limits(miner, 2**64, "2", "2").status_code == 404


def test_a_renter_cannot_set_limits(app, client, accounts):
    with app.app_context():
        lab = create_pool("Lab-A")
    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/account/tokens")
    response = client.post(f"/miner/pools/{lab.id}/limits", data={
        "max_chips_per_user": "100", "max_replicas_per_user": "", "csrf_token": token})
    assert response.status_code == 403
    with app.app_context():
        assert limits_row(lab) is None


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def api(app, client, accounts):
    """``api(who, method, path, json=...)`` with the miner's or the renter's token."""
    with app.app_context():
        tokens = {"miner": create_token(accounts["miner"], "t")[1],
                  "rene": create_token(accounts["renter"], "t")[1]}

    def call(who, method, path, **kwargs):
        return client.open(f"/api/v1{path}", method=method,
                           headers={"Authorization": f"Bearer {tokens[who]}"}, **kwargs)

    return call


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json["error"]


def test_the_api_reads_and_patches_limits(app, api):
    default = api("miner", "GET", "/pools/1").json
    assert default["limits"] == {"max_chips_per_user": None, "max_replicas_per_user": None,
                                 "cull_idle_minutes": None, "max_run_minutes": None}
    changed = api("miner", "PATCH", "/pools/1", json={"limits": {"max_chips_per_user": 2}})
    assert changed.status_code == 200, changed.json
    assert changed.json["limits"] == {"max_chips_per_user": 2, "max_replicas_per_user": None,
                                      "cull_idle_minutes": None, "max_run_minutes": None}
    changed = api("miner", "PATCH", "/pools/1", json={"limits": {"max_replicas_per_user": 0}})
    assert changed.json["limits"] == {"max_chips_per_user": 2, "max_replicas_per_user": 0,
                                      "cull_idle_minutes": None, "max_run_minutes": None}
    assert api("miner", "PATCH", "/pools/1", json={"description": "d"}).json["limits"] == (
        changed.json["limits"])
    POOL.validate(changed.json, "")
    seen = api("rene", "GET", "/pools").json  # the renter sees what holds them back
    assert seen[0]["limits"] == changed.json["limits"]
    POOL.validate(seen[0], "")
    cleared = api("miner", "PATCH", "/pools/1", json={
        "limits": {"max_chips_per_user": None, "max_replicas_per_user": None}})
    assert cleared.json["limits"] == {"max_chips_per_user": None, "max_replicas_per_user": None,
                                      "cull_idle_minutes": None, "max_run_minutes": None}
    with app.app_context():
        assert PoolLimit.select().count() == 0

    made = api("miner", "POST", "/pools", json={"name": "Lab-A",
                                                "limits": {"max_replicas_per_user": 4}})
    assert made.status_code == 201
    assert made.json["limits"] == {"max_chips_per_user": None, "max_replicas_per_user": 4,
                                   "cull_idle_minutes": None, "max_run_minutes": None}


@pytest.mark.parametrize("limits", [
    {"max_chips_per_user": -1}, {"max_chips_per_user": 10001}, {"max_chips_per_user": "2"},
    {"max_chips_per_user": 1.5}, {"max_replicas_per_user": True}, {"max_gpus_per_user": 1},
    None, [1, 2]])
def test_the_api_refuses_bad_limits_and_changes_nothing(app, api, limits):
    api("miner", "PATCH", "/pools/1", json={"limits": {"max_chips_per_user": 3}})
    error = error_of(api("miner", "PATCH", "/pools/1", json={
        "description": "changed", "limits": limits}), 400)
    assert error["code"] == "invalid_body" and "limits" in error["message"]
    pool = api("miner", "GET", "/pools/1").json
    assert pool["limits"]["max_chips_per_user"] == 3 and pool["description"] != "changed"


def test_only_the_miner_patches_limits(app, client, api, accounts):
    assert error_of(api("rene", "PATCH", "/pools/1", json={
        "limits": {"max_chips_per_user": 100}}), 403)["code"] == "forbidden"
    login(client, "miner", "mina", PASSWORD)
    body = {"limits": {"max_chips_per_user": 1}}
    assert error_of(client.patch("/api/v1/pools/1", json=body), 400)["code"] == "csrf"
    with app.app_context():
        assert limits_row(Pool.get_by_id(1)) is None
    header = {"X-CSRFToken": csrf_token(client, "/miner/pools")}
    assert client.patch("/api/v1/pools/1", json=body, headers=header).status_code == 200
    with app.app_context():
        assert limits_row(Pool.get_by_id(1)) == (1, None)
