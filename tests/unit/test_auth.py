"""Logging in and out, role separation, open redirects, CSRF and the rate limit."""

import pytest

from portal.auth import safe_next
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

MINER_PAGES = ["/miner/", "/miner/users", "/miner/nodes", "/miner/machine-time"]
RENTER_PAGES = ["/renter/", "/renter/notebooks", "/renter/tasks"]


def test_renter_logs_in_and_out(client, accounts):
    response = login(client, "renter", "rene", PASSWORD)
    assert response.status_code == 302 and response.location == "/renter/"
    assert "Rene Renter" in client.get("/renter/").get_data(as_text=True)
    token = csrf_token(client, "/renter/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.location == "/login"
    assert client.get("/renter/").location.startswith("/login?next=")


def test_miner_logs_in_at_miner_page(client, accounts):
    response = login(client, "miner", "mina", PASSWORD)
    assert response.location == "/miner/"
    assert client.get("/miner/users").status_code == 200


def test_wrong_password_is_refused(client, accounts):
    response = login(client, "renter", "rene", "not-the-password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert client.get("/renter/").status_code == 302


def test_each_role_signs_in_only_on_its_own_page(client, accounts):
    assert login(client, "miner", "rene", PASSWORD).status_code == 401
    assert login(client, "renter", "mina", PASSWORD).status_code == 401
    assert client.get("/miner/").status_code == 302  # still anonymous


@pytest.mark.parametrize("path", MINER_PAGES)
def test_renter_gets_403_on_miner_pages(client, accounts, path):
    login(client, "renter", "rene", PASSWORD)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", RENTER_PAGES)
def test_miner_gets_403_on_renter_pages(client, accounts, path):
    login(client, "miner", "mina", PASSWORD)
    assert client.get(path).status_code == 403


def test_renter_cannot_post_to_miner_actions(client, accounts):
    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/renter/")
    response = client.post("/miner/users", data={"csrf_token": token, "name": "mallory",
                                                  "role": "miner", "password": "x" * 12})
    assert response.status_code == 403


def test_anonymous_visitor_is_sent_to_the_right_login(client):
    assert client.get("/miner/users").location == "/miner/login?next=/miner/users"
    assert client.get("/renter/tasks").location == "/login?next=/renter/tasks"


def test_next_brings_the_user_back(client, accounts):
    response = login(client, "renter", "rene", PASSWORD, next_url="/renter/tasks")
    assert response.location == "/renter/tasks"


# JupyterHub's open-redirect vectors, and a few more a browser would follow off-site.
OFFSITE = ["https://other.domain", "//other.domain", "///other.domain/triple",
           "\\\\other.domain", "ftp://x", "/\\other.domain", "/\t/other.domain",
           "javascript:alert(1)", "http:/other.domain", " //other.domain"]


@pytest.mark.parametrize("target", OFFSITE)
def test_next_never_leaves_the_site(client, accounts, target):
    assert safe_next(target) is None
    response = login(client, "renter", "rene", PASSWORD, next_url=target)
    assert response.location == "/renter/"


@pytest.mark.parametrize("target", ["/renter/tasks", "/renter/?tab=a", "/miner/users#x"])
def test_local_next_is_kept(target):
    assert safe_next(target) == target


def test_post_without_csrf_token_is_rejected(client, accounts):
    response = client.post("/login", data={"name": "rene", "password": PASSWORD})
    assert response.status_code == 400
    login(client, "miner", "mina", PASSWORD)
    response = client.post("/miner/groups", data={"group-name": "lab-a"})
    assert response.status_code == 400
    response = client.post("/logout")
    assert response.status_code == 400
    assert client.get("/miner/").status_code == 200  # still signed in


def test_htmx_post_with_csrf_header_is_accepted_and_without_is_rejected(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    token = csrf_token(client, "/miner/users")
    htmx = {"HX-Request": "true"}
    response = client.post("/miner/groups", data={"group-name": "lab-a"}, headers=htmx)
    assert response.status_code == 400
    response = client.post("/miner/groups", data={"group-name": "lab-a"},
                           headers={**htmx, "X-CSRFToken": token})
    assert response.status_code == 303
    assert "lab-a" in client.get("/miner/users").get_data(as_text=True)


def test_base_page_sets_the_csrf_header_for_htmx(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    html = client.get("/miner/").get_data(as_text=True)
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_login_is_rate_limited(client, accounts):
    token = csrf_token(client, "/login")
    codes = [client.post("/login", data={"name": "rene", "password": "wrong",
                                         "csrf_token": token}).status_code
             for _ in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    # Even the right password is refused until the window passes.
    assert client.post("/login", data={"name": "rene", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 429


def test_password_reset_ends_other_sessions(app, client, accounts):
    from portal.users import set_password

    login(client, "renter", "rene", PASSWORD)
    assert client.get("/renter/").status_code == 200
    with app.app_context():
        set_password(accounts["renter"], "a-brand-new-password")
    assert client.get("/renter/").status_code == 302


def test_disabled_user_is_signed_out_and_cannot_sign_in(app, client, accounts):
    from portal.users import set_active

    login(client, "renter", "rene", PASSWORD)
    with app.app_context():
        set_active(accounts["renter"], False)
    assert client.get("/renter/").status_code == 302
    assert login(client, "renter", "rene", PASSWORD).status_code == 401
