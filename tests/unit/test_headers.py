"""Security headers on both origins, and the limits on guessing (sign-in and API tokens).

The portal's pages and API answers carry the strict policy of ``portal.security_headers`` (no inline
script, no framing); the notebook origin's own pages carry a stricter one still, and
proxied JupyterLab answers keep their own with ``frame-ancestors 'self'`` added. A client
guessing API tokens is limited like one guessing passwords, and every 429 says when to
come back. That a browser really refuses to frame a page is in tests/e2e/test_headers.py.
"""

import base64
import hashlib
import re
from pathlib import Path

import pytest

from portal.models import Replica
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import PASSWORD, ROOT
from tests.support import csrf_token, login
from tests.unit import test_proxy_access as proxy
from tests.unit import test_tasks as shared

world = shared.world
upstream = proxy.upstream
nb = proxy.nb
LIMIT = "3 per minute"  # HOURGLASS_LOGIN_RATE_LIMIT for the limit tests


def policy(response):
    """The Content-Security-Policy as {directive: [sources]}."""
    text = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in text.split(";") if part.strip()}


def assert_portal_headers(response):
    csp = policy(response)
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # plain http: no HSTS


def assert_own_proxy_headers(response):
    csp = policy(response)
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert "script-src" not in csp and csp["form-action"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


# --- the portal ----------------------------------------------------------------------------


def test_a_portal_page_and_its_sign_in_keep_the_cookie_settings(client, accounts):
    page = client.get("/login")
    assert page.status_code == 200
    assert_portal_headers(page)
    signed_in = login(client, "renter", "rene", PASSWORD)
    assert signed_in.status_code == 302  # plain http: Talisman redirects nothing to https
    assert_portal_headers(signed_in)
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    tokens = client.get("/account/tokens")
    assert tokens.status_code == 200
    assert_portal_headers(tokens)


def test_api_answers_and_static_files_carry_them_too(app, client, accounts):
    assert_portal_headers(client.get("/api/v1/me"))  # 401, JSON
    with app.app_context():
        _row, token = create_token(create_user("tess", "renter", PASSWORD), "t")
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.is_json
    assert_portal_headers(me)
    assert client.get("/static/css/hourglass.css").headers["X-Content-Type-Options"] == "nosniff"


def test_only_the_console_may_style_inline_and_open_may_post_to_the_notebooks(
        app, world, upstream, nb):
    with app.app_context():
        task = shared.submit()
        replica = Replica.select().where(Replica.task == task.id).first()
    rene = proxy.signed_in(app, "rene")
    console = rene.get(f"/renter/tasks/{task.id}/replicas/{replica.id}/console")
    assert console.status_code == 200
    csp = policy(console)
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]  # xterm.js
    assert csp["script-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    assert_portal_headers(rene.get(f"/renter/tasks/{task.id}/replicas/{replica.id}/logs"))

    notebook = proxy.running_notebook(app, upstream)

    opened = proxy.open_page(rene, notebook.id)
    assert opened.status_code == 200
    csp = policy(opened)
    assert csp["form-action"] == ["'self'", nb] and csp["script-src"] == ["'self'"]
    # Not same-origin: the POST to the notebook origin must carry its Origin.
    assert opened.headers["Referrer-Policy"] == "strict-origin"
    assert "<script>" not in opened.get_data(as_text=True)
    assert_portal_headers(rene.get("/renter/notebooks"))  # and nothing stays for the next


INLINE = [re.compile(r"<script(?![^>]*\bsrc=)[^>]*>"),  # a script element without src
          re.compile(r"\son[a-z]+\s*=", re.I),  # onclick= and friends
          re.compile(r"\sstyle\s*="),  # a style attribute
          re.compile(r"\shx-on"),  # htmx's inline handlers (eval)
          re.compile(r"javascript:", re.I)]


def test_templates_hold_no_inline_script_or_style():
    """What the policy would refuse: kept out of every template. The one exception is the
    notebook origin's message page, whose <style> the policy allows by its hash."""
    for path in sorted(Path(ROOT, "templates").rglob("*.html")):
        text = path.read_text()
        for pattern in INLINE:
            assert not pattern.search(text), f"{path.name}: {pattern.pattern}"
        styles = re.findall(r"<style[^>]*>", text)
        assert styles in ([], ["<style>"]) and (not styles or "{{ page_style }}" in text), \
            path.name


# --- the notebook origin -------------------------------------------------------------------


def test_the_proxys_own_pages_are_strict(app, world, upstream, nb):
    client = app.test_client()
    for answer in (client.get("/", base_url=nb),  # a redirect to the portal
                   client.get("/nowhere", base_url=nb),  # 404 page
                   client.get("/nb/1/lab", base_url=nb),  # signed out: to sign in
                   client.get("/nb/1/api/status", base_url=nb,
                              headers={"Sec-Fetch-Mode": "cors"}),  # 401 page
                   client.post("/_hourglass/enter", base_url=nb, data={"grant": "x"})):
        assert_own_proxy_headers(answer)
    page = client.get("/nowhere", base_url=nb)
    style = re.search(r"<style>([^<]+)</style>", page.get_data(as_text=True)).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy(page)["style-src"] == [f"'sha256-{digest}'"]


def test_proxied_jupyterlab_keeps_its_policy_and_may_frame_only_itself(app, world, upstream,
                                                                       nb):
    notebook = proxy.running_notebook(app, upstream)
    rene = proxy.signed_in(app, "rene")
    proxy.opened(rene, nb, notebook)
    answer = rene.get(f"/nb/{notebook.replica}/page", base_url=nb)
    assert answer.status_code == 200
    assert answer.headers.getlist("Content-Security-Policy") == [
        proxy.JUPYTER_CSP, "frame-ancestors 'self'"]  # JupyterLab's own, then ours
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_signed_out_the_notebook_origin_names_no_notebook(app, world, upstream, nb):
    notebook = proxy.running_notebook(app, upstream)
    client = app.test_client()

    def answer(replica_id, **kwargs):
        got = client.get(f"/nb/{replica_id}/lab", base_url=nb, **kwargs)
        return got.status_code, sorted(got.headers.items()), got.get_data()

    existing, missing = answer(notebook.replica), answer(notebook.replica + 1000)
    assert existing == missing
    status, headers, _body = existing
    assert status == 303 and dict(headers)["Location"] == (
        f"http://localhost:{app.config['PORT']}/login?next=%2Frenter%2Fnotebooks")
    fetch = {"headers": {"Sec-Fetch-Mode": "cors"}}
    assert answer(notebook.replica, **fetch) == answer(notebook.replica + 1000, **fetch)


# --- rate limits -----------------------------------------------------------------------------


@pytest.fixture
def limited(instance):
    """An app whose sign-in and token limit is LIMIT, with a renter and a token of hers."""
    from app import create_app
    from portal import db

    app = create_app({"TESTING": True, "LOGIN_RATE_LIMIT": LIMIT})
    with app.app_context():
        db.upgrade()
        _row, token = create_token(create_user("rene", "renter", PASSWORD), "laptop")
    app.token = token
    yield app
    db.database.close()


def retry_after(response):
    value = response.headers["Retry-After"]
    assert value.isdigit() and 0 <= int(value) <= 60, value
    return int(value)


def test_too_many_sign_ins_answer_429_with_retry_after(limited):
    client = limited.test_client()
    token = csrf_token(client, "/login")
    codes = [client.post("/login", data={"name": "rene", "password": "wrong",
                                         "csrf_token": token}).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    refused = client.post("/login", data={"name": "rene", "password": PASSWORD,
                                          "csrf_token": token})
    assert refused.status_code == 429 and retry_after(refused) >= 0
    assert "Too many attempts" in refused.get_data(as_text=True)


def test_guessed_api_tokens_are_limited_by_address(limited):
    client = limited.test_client()
    guess = {"Authorization": "Bearer hg_" + "x" * 43}
    for _ in range(3):
        assert client.get("/api/v1/me", headers=guess).status_code == 401
    refused = client.get("/api/v1/me", headers=guess)
    assert refused.status_code == 429 and retry_after(refused) >= 0
    assert refused.get_json()["error"]["code"] == "too_many_requests"
    assert "Retry-After" in refused.get_json()["error"]["message"]
    # A right token from there too, until the window passes: a right guess must not show.
    right = {"Authorization": f"Bearer {limited.token}"}
    assert client.get("/api/v1/tokens", headers=right).status_code == 429
    # Another address is not held up; nor is a signed-in browser at this one.
    other = client.get("/api/v1/me", headers=right, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200 and other.get_json()["name"] == "rene"
    assert login(client, "renter", "rene", PASSWORD).status_code == 302
    assert client.get("/api/v1/me").status_code == 200


def test_right_tokens_do_not_count(limited):
    client = limited.test_client()
    right = {"Authorization": f"Bearer {limited.token}"}
    assert all(client.get("/api/v1/me", headers=right).status_code == 200 for _ in range(6))
