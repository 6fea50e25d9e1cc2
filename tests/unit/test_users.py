"""Users and groups: the rules, the miner's page, and the ``user`` CLI."""

import re

import pytest

from portal.models import Group, Membership, User
from portal.users import UserError, create_group, create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/miner/users")})


@pytest.mark.parametrize("name", ["", "a", "Bob", "has space", "x" * 33, "1abc", "ok;rm"])
def test_bad_names_are_refused(app, name):
    with app.app_context(), pytest.raises(UserError):
        create_user(name, "renter", PASSWORD)


def test_duplicates_and_short_passwords_are_refused(app, accounts):
    with app.app_context():
        with pytest.raises(UserError, match="already exists"):
            create_user("rene", "renter", PASSWORD)
        with pytest.raises(UserError, match="at least 8"):
            create_user("newbie", "renter", "short")
        with pytest.raises(UserError, match="no group"):
            create_user("newbie", "renter", PASSWORD, groups=["nope"])
        create_group("lab-a")
        with pytest.raises(UserError, match="already exists"):
            create_group("lab-a")
        assert not User.select().where(User.name == "newbie").exists()


def test_passwords_are_hashed(app, accounts):
    with app.app_context():
        stored = User.get(User.name == "rene").password_hash
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_miner_creates_a_renter_with_a_generated_password_shown_once(app, miner):
    post(miner, "/miner/groups", **{"group-name": "lab-a", "group-description": "Lab A"})
    with app.app_context():
        lab = Group.get(Group.name == "lab-a")
    response = post(miner, "/miner/users", name="carol", display_name="Carol <b>C</b>",
                    role="renter", password="", groups=str(lab.id))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    password = re.search(r'id="shown-password">.*?<code>([^<]+)</code>', html, re.S).group(1)
    assert "Carol &lt;b&gt;C&lt;/b&gt;" in html  # escaped, never raw HTML
    assert password not in miner.get("/miner/users").get_data(as_text=True)
    with app.app_context():
        carol = User.get(User.name == "carol")
        assert carol.role == "renter"
        assert [m.group.name for m in carol.memberships] == ["lab-a"]
    renter = app.test_client()
    assert login(renter, "renter", "carol", password).location == "/renter/"


def test_create_user_form_errors_are_shown(miner):
    response = post(miner, "/miner/users", name="Bad Name!", role="renter", password="")
    assert response.status_code == 400
    assert "name must be 2-32 characters" in response.get_data(as_text=True)


def test_miner_disables_enables_and_resets(app, miner, accounts):
    rene = accounts["renter"].id
    assert post(miner, f"/miner/users/{rene}/active", active="0").status_code == 303
    with app.app_context():
        assert User.get_by_id(rene).active is False
    post(miner, f"/miner/users/{rene}/active", active="1")
    response = post(miner, f"/miner/users/{rene}/password", password="")
    password = re.search(r"<code>([^<]+)</code>", response.get_data(as_text=True)).group(1)
    other = app.test_client()
    assert login(other, "renter", "rene", PASSWORD).status_code == 401
    assert login(other, "renter", "rene", password).status_code == 302
    response = post(miner, f"/miner/users/{rene}/password", password="typed-password-1")
    assert "typed-password-1" not in response.get_data(as_text=True)


def test_miner_cannot_disable_themself(app, miner, accounts):
    post(miner, f"/miner/users/{accounts['miner'].id}/active", active="0")
    with app.app_context():
        assert User.get_by_id(accounts["miner"].id).active is True


def test_miner_sets_groups_and_deletes_a_group(app, miner, accounts):
    post(miner, "/miner/groups", **{"group-name": "lab-a"})
    post(miner, "/miner/groups", **{"group-name": "lab-b"})
    with app.app_context():
        ids = [g.id for g in Group.select().order_by(Group.name)]
    rene = accounts["renter"].id
    post(miner, f"/miner/users/{rene}/groups", groups=[str(i) for i in ids])
    with app.app_context():
        assert Membership.select().where(Membership.user == rene).count() == 2
    post(miner, f"/miner/groups/{ids[0]}/delete")
    with app.app_context():
        assert [m.group.name for m in Membership.select().where(Membership.user == rene)] == [
            "lab-b"]


def test_unknown_user_or_group_is_404(miner):
    assert post(miner, "/miner/users/9999/active", active="0").status_code == 404
    assert post(miner, "/miner/groups/9999/delete").status_code == 404
    assert post(miner, f"/miner/users/{2**64}/active", active="0").status_code == 404
    assert miner.get(f"/miner/nodes/{2**64}").status_code == 404


def test_cli_adds_and_lists_users(app, runner):
    result = runner.invoke(args=["user", "add", "dora", "--role", "renter", "--group", "lab-a",
                                 "--password-stdin"], input="dora-password\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["user", "add", "eve", "--role", "miner"])
    assert result.exit_code == 0
    generated = re.search(r"Password \(shown once\): (\S+)", result.output).group(1)
    with app.app_context():
        from portal.users import authenticate

        assert authenticate("dora", "dora-password").name == "dora"
        assert authenticate("eve", generated).role == "miner"
    listing = runner.invoke(args=["user", "list"]).output.splitlines()
    assert "dora\trenter\tactive\tlab-a" in listing
    assert "eve\tminer\tactive\t" in listing


def test_cli_refuses_bad_input(runner, app):
    result = runner.invoke(args=["user", "add", "Bad Name", "--role", "renter"])
    assert result.exit_code != 0 and "name must be" in result.output
    result = runner.invoke(args=["user", "add", "frank", "--role", "admin"])
    assert result.exit_code != 0
    result = runner.invoke(args=["user", "add", "frank", "--role", "renter",
                                 "--password-stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 8" in result.output


def test_first_miner_is_created_once(app):
    from portal.users import ensure_first_miner

    with app.app_context():
        password = ensure_first_miner()
        assert password and User.get(User.name == "admin").role == "miner"
        assert ensure_first_miner() is None
