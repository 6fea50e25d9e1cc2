"""Personal API tokens: the rules, the ``token`` CLI, and the API tokens page."""

import hashlib
import re
from datetime import timedelta

import pytest

from portal.models import ApiToken, utcnow
from portal.tokens import TokenError, create_token, revoke_token, tokens_of, verify_token
from portal.users import set_active
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

SHOWN = re.compile(r'id="shown-token">.*?<code>([^<]+)</code>', re.S)


@pytest.fixture
def renter(client, accounts):
    login(client, "renter", "rene", PASSWORD)
    return client


@pytest.fixture
def miner_client(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def post(client, path, **data):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/account/tokens")})


def test_a_token_is_random_and_only_its_hash_is_stored(app, accounts):
    with app.app_context():
        row, token = create_token(accounts["renter"], "laptop")
        _other, second = create_token(accounts["renter"], "laptop")
        stored = ApiToken.get_by_id(row.id)
    assert token.startswith("hg_") and len(token) == 46 and token != second
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.prefix == token[:11]
    assert token not in {stored.name, stored.prefix, stored.token_hash}


def test_verify_finds_the_user_and_nothing_else(app, accounts):
    with app.app_context():
        _row, token = create_token(accounts["miner"], "ci")
        assert verify_token(token).name == "mina"
        for wrong in ["", token[:-1], token + "x", token.replace("hg_", "xx_"), "hg_" + "a" * 500]:
            assert verify_token(wrong) is None, wrong


def test_last_used_is_written_at_most_once_a_minute(app, accounts):
    with app.app_context():
        row, token = create_token(accounts["renter"], "script")
        assert ApiToken.get_by_id(row.id).last_used_at is None
        verify_token(token)
        first = ApiToken.get_by_id(row.id).last_used_at
        assert first is not None and utcnow() - first < timedelta(seconds=5)
        verify_token(token)
        assert ApiToken.get_by_id(row.id).last_used_at == first
        old = utcnow() - timedelta(minutes=2)
        ApiToken.update(last_used_at=old).where(ApiToken.id == row.id).execute()
        verify_token(token)
        assert ApiToken.get_by_id(row.id).last_used_at > old + timedelta(minutes=1)


def test_a_disabled_users_tokens_stop_working_and_none_are_made(app, accounts):
    with app.app_context():
        _row, token = create_token(accounts["renter"], "script")
        set_active(accounts["renter"], False)
        assert verify_token(token) is None
        with pytest.raises(TokenError, match="disabled"):
            create_token(accounts["renter"], "another")
        set_active(accounts["renter"], True)
        assert verify_token(token).name == "rene"


@pytest.mark.parametrize("name, message", [
    ("", "Enter a name"), ("   ", "Enter a name"), ("x" * 65, "At most 64"),
    ("line\nbreak", "control characters"), ("tab\there", "control characters"),
    ("a\u202eb", "text-direction overrides")])
def test_bad_token_names_are_refused(app, accounts, name, message):
    with app.app_context(), pytest.raises(TokenError, match=message):
        create_token(accounts["renter"], name)
    with app.app_context():
        assert ApiToken.select().count() == 0


def test_revoke_only_touches_the_users_own_token(app, accounts):
    with app.app_context():
        mine, token = create_token(accounts["renter"], "mine")
        assert revoke_token(accounts["miner"], mine.id) is None
        assert verify_token(token) is not None
        assert revoke_token(accounts["renter"], mine.id).name == "mine"
        assert verify_token(token) is None
        assert tokens_of(accounts["renter"]) == []


# --- the CLI -----------------------------------------------------------------------------


def test_cli_creates_lists_and_revokes(app, runner, accounts):
    result = runner.invoke(args=["token", "create", "rene", "--name", "notebook sync"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("hg_") and "\n" not in token  # alone on stdout: TOKEN=$(...)
    assert "shown this once" in result.stderr
    with app.app_context():
        assert verify_token(token).name == "rene"
        row = ApiToken.get(ApiToken.name == "notebook sync")

    listed = runner.invoke(args=["token", "list", "rene"]).output
    assert f"{row.id}\tnotebook sync\t{token[:11]}" in listed and token not in listed
    assert "never" not in listed  # verify_token above used it

    result = runner.invoke(args=["token", "revoke", str(row.id)])
    assert result.exit_code == 0 and "rene" in result.output
    with app.app_context():
        assert verify_token(token) is None
    assert runner.invoke(args=["token", "list", "rene"]).output == ""


def test_cli_refuses_unknown_users_and_ids(runner, accounts):
    result = runner.invoke(args=["token", "create", "nobody"])
    assert result.exit_code != 0 and "no user named 'nobody'" in result.output
    result = runner.invoke(args=["token", "revoke", "999"])
    assert result.exit_code != 0 and "no token 999" in result.output
    result = runner.invoke(args=["token", "create", "rene", "--name", ""])
    assert result.exit_code != 0 and "Enter a name" in result.output


# --- the page ----------------------------------------------------------------------------


def test_the_page_needs_a_signed_in_user(client, accounts):
    response = client.get("/account/tokens")
    assert response.status_code == 302 and response.location.startswith("/login?next=")


def test_a_new_token_is_shown_once_and_works(app, renter):
    response = post(renter, "/account/tokens", name="laptop <b>")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["HX-Push-Url"] == "/account/tokens"
    token = SHOWN.search(html).group(1)
    assert "laptop &lt;b&gt;" in html  # escaped, never raw HTML
    with app.app_context():
        assert verify_token(token).name == "rene"
    again = renter.get("/account/tokens").get_data(as_text=True)
    assert token not in again and token[:11] in again  # not flashed, not kept: only its prefix


def test_a_miner_has_the_page_too(miner_client):
    response = post(miner_client, "/account/tokens", name="ci")
    assert SHOWN.search(response.get_data(as_text=True))


def test_form_errors_answer_400(app, renter):
    response = post(renter, "/account/tokens", name="")
    assert response.status_code == 400 and not SHOWN.search(response.get_data(as_text=True))
    response = post(renter, "/account/tokens", name="x" * 65)
    assert response.status_code == 400
    with app.app_context():
        assert ApiToken.select().count() == 0


def test_revoke_from_the_page(app, renter, accounts):
    with app.app_context():
        row, token = create_token(accounts["renter"], "old")
    response = post(renter, f"/account/tokens/{row.id}/revoke")
    assert response.status_code == 303 and response.location == "/account/tokens"
    assert "Revoked the token" in renter.get("/account/tokens").get_data(as_text=True)
    with app.app_context():
        assert verify_token(token) is None


def test_another_users_token_is_404(app, renter, accounts):
    with app.app_context():
        row, token = create_token(accounts["miner"], "mina's")
    assert post(renter, f"/account/tokens/{row.id}/revoke").status_code == 404
    assert "mina" not in renter.get("/account/tokens").get_data(as_text=True)
    with app.app_context():
        assert verify_token(token).name == "mina"


def test_page_posts_need_csrf(app, renter, accounts):
    with app.app_context():
        row, token = create_token(accounts["renter"], "keep")
    assert renter.post("/account/tokens", data={"name": "sneaky"}).status_code == 400
    assert renter.post(f"/account/tokens/{row.id}/revoke").status_code == 400
    with app.app_context():
        assert [t.name for t in tokens_of(accounts["renter"])] == ["keep"]
        assert verify_token(token) is not None


def test_the_users_name_links_to_the_page(renter):
    html = renter.get("/renter/").get_data(as_text=True)
    assert re.search(r'<a href="/account/tokens" class="who"[^>]*>Rene Renter</a>', html)
