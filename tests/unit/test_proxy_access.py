"""The notebook proxy (``portal.proxy``) through Flask's test client: which port serves
which app, Open's one-time grant, the access cookie, who may reach which replica, signing
out, and HTTP forwarding to a stand-in for JupyterLab (a real HTTP server on a thread that
tells what it received), with the Jupyter token added, never shown and never logged.

The portal answers on the test client's default port (80); the notebook origin is the
same host on ``NOTEBOOK_PORT``. Cookies are per host, not per port, in the test client as
in browsers: the portal's session cookie reaches the notebook origin (and must go no
further). JupyterLab itself and WebSockets are in tests/e2e/test_notebook_open.py.
"""

import hashlib
import io
import json
import logging
import re
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from portal import notebooks
from portal.models import NotebookAccess, NotebookGrant, Replica, Task, User, utcnow
from portal.proxy import arrival_port, forward
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import IMAGE

world = shared.world  # pools, nodes, specs, renters rene and rita
GRANT_RE = re.compile(r'name="grant" value="([^"]+)"')
ACTION_RE = re.compile(r'<form method="post" action="([^"]+)" id="enter-notebook">')
MIB = 1024 * 1024
# What Jupyter Server sends on its pages (its default policy).
JUPYTER_CSP = "frame-ancestors 'self'; report-uri /nb/1/api/security/csp-report"


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


# --- a stand-in for JupyterLab: a real HTTP server that tells what it received -----------


class Upstream:
    """An HTTP server on 127.0.0.1 answering under /nb/<replica>/: ``echo`` (what arrived:
    method, path, query, headers, body length and SHA-256), ``redirect`` and ``page`` (both
    repeat the token it was sent, as Jupyter's own pages may), ``big`` (3 MiB streamed)."""

    def __init__(self):
        self.first_chunk = threading.Event()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.address = f"127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def app(self, environ, start_response):
        request = Request(environ)
        token = request.headers.get("Authorization", "").removeprefix("token ")
        name = request.path.rsplit("/", 1)[-1]
        if name == "redirect":
            response = Response(status=302, headers={
                "Location": f"http://{self.address}/nb/1/lab?token={token}&x=1",
                "Set-Cookie": "username-127-0-0-1=jupyter; Path=/"})
        elif name == "page":
            response = Response(f'<body data-jupyter-api-token="{token}">{token}</body>',
                                mimetype="text/html", headers={"X-Seen": token,
                                                               "Set-Cookie": "_xsrf=1",
                                                               "Content-Security-Policy":
                                                               JUPYTER_CSP})
        elif name == "big":
            response = Response((b"x" * MIB for _ in range(3)), mimetype="text/plain")
        else:
            digest, length = hashlib.sha256(), 0
            while chunk := request.stream.read(64 * 1024):
                self.first_chunk.set()
                digest.update(chunk)
                length += len(chunk)
            headers = dict(request.headers)
            if "Authorization" in headers:  # its hash: the proxy masks the token in answers
                headers["Authorization"] = sha256(headers["Authorization"])
            response = Response(json.dumps({
                "method": request.method, "path": request.path,
                "query": request.query_string.decode(), "headers": headers,
                "length": length, "sha256": digest.hexdigest()}), mimetype="application/json")
        return response(environ, start_response)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.stop()


# --- the world ---------------------------------------------------------------------------


def running_notebook(app, upstream, user="rene", count=1):
    """A notebook of ``user``'s whose run's replicas run, answering at ``upstream``."""
    with app.app_context():
        owner = User.get(User.name == user)
        notebook = notebooks.create_notebook(owner, f"lab-of-{user}", IMAGE, "1 TPU", "default",
                                         count=count)
        run = notebooks.active_run(notebook)
        Replica.update(state="running", address=upstream.address).where(
            Replica.task == run).execute()
        replicas = [r.id for r in Replica.select().where(Replica.task == run)
                    .order_by(Replica.id)]
        return SimpleNamespace(id=notebook.id, run=run.id, secret=run.secret,
                               replica=replicas[0], replicas=replicas)


def signed_in(app, name):
    client = app.test_client()
    assert login(client, "renter", name, PASSWORD).status_code == 302
    return client


@pytest.fixture
def nb(app):
    """The notebook origin's base URL, as the test client addresses it."""
    return f"http://localhost:{app.config['NOTEBOOK_PORT']}"


def open_page(client, notebook_id, **fields):
    token = csrf_token(client, f"/renter/notebooks/{notebook_id}")
    return client.post(f"/renter/notebooks/{notebook_id}/open",
                       data={"csrf_token": token, **fields})


def enter(client, nb, grant, origin="http://localhost"):
    headers = {"Origin": origin} if origin else {}
    return client.post("/_hourglass/enter", base_url=nb, data={"grant": grant},
                       headers=headers)


def opened(client, nb, notebook, **fields):
    """Open ``notebook`` and enter the notebook origin, as the browser does: the redirect."""
    page = open_page(client, notebook.id, **fields)
    assert page.status_code == 200, page.get_data(as_text=True)
    answer = enter(client, nb, GRANT_RE.search(page.get_data(as_text=True)).group(1))
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return answer


def echo(client, nb, replica, path="echo", **kwargs):
    answer = client.get(f"/nb/{replica}/{path}", base_url=nb, **kwargs)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


# --- which port serves which app ---------------------------------------------------------


def test_each_port_serves_only_its_own_app(app, world, nb):
    client = app.test_client()
    assert client.get("/nb/1/lab").status_code == 404  # the portal has no /nb/
    assert client.get("/login").status_code == 200
    assert "csrf_token" not in client.get("/login", base_url=nb).get_data(as_text=True)
    assert client.get("/login", base_url=nb).status_code == 404
    assert client.get("/static/css/hourglass.css", base_url=nb).status_code == 404
    home = client.get("/", base_url=nb)
    assert home.status_code == 302
    assert home.headers["Location"] == f"http://localhost:{app.config['PORT']}/renter/notebooks"


def test_the_port_is_the_listening_sockets_when_there_is_one():
    class Sock:
        def getsockname(self):
            return ("127.0.0.1", 8123)

    assert arrival_port({"gunicorn.socket": Sock(), "SERVER_PORT": "80"}) == 8123
    assert arrival_port({"SERVER_PORT": "8001"}) == 8001
    assert arrival_port({"SERVER_PORT": "x"}) is None


# --- Open: a one-time grant, handed over in a POST body ----------------------------------


def test_open_hands_a_one_time_grant_to_the_notebook_origin(app, world, upstream, nb):
    notebook = running_notebook(app, upstream)
    rene = signed_in(app, "rene")
    listing = rene.get("/renter/notebooks").get_data(as_text=True)
    assert f'data-open="{notebook.id}"' in listing and 'target="_blank"' in listing
    page = open_page(rene, notebook.id)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert ACTION_RE.search(body).group(1) == f"{nb}/_hourglass/enter"
    grant = GRANT_RE.search(body).group(1)
    assert notebook.secret not in body
    with app.app_context():
        row = NotebookGrant.get()
        assert row.token_hash == sha256(grant)
        assert grant not in json.dumps(NotebookGrant.select().dicts()[0], default=str)
        assert row.replica_id == notebook.replica and not row.used

    answer = enter(rene, nb, grant)
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/nb/{notebook.replica}/lab"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("hourglass_notebook=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    with app.app_context():
        assert NotebookAccess.get().token_hash == sha256(value)
    assert echo(rene, nb, notebook.replica)["path"] == f"/nb/{notebook.replica}/echo"

    again = enter(app.test_client(), nb, grant)  # used once already
    assert again.status_code == 403 and "expired" in again.get_data(as_text=True)
    assert "Set-Cookie" not in again.headers


def test_an_expired_grant_or_one_from_another_site_is_refused(app, world, upstream, nb):
    notebook = running_notebook(app, upstream)
    rene = signed_in(app, "rene")
    late = GRANT_RE.search(open_page(rene, notebook.id).get_data(as_text=True)).group(1)
    with app.app_context():
        NotebookGrant.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert enter(rene, nb, late).status_code == 403
    foreign = GRANT_RE.search(open_page(rene, notebook.id).get_data(as_text=True)).group(1)
    assert enter(rene, nb, foreign, origin="http://evil.example").status_code == 403
    assert enter(rene, nb, foreign).status_code == 403  # that try used it up
    for bad in ("", "x" * 500, "not-a-grant"):
        assert enter(rene, nb, bad).status_code == 403
    with app.app_context():
        assert NotebookAccess.select().count() == 0


def test_open_needs_your_running_notebook_and_a_csrf_token(app, world, upstream, nb):
    mine = running_notebook(app, upstream)
    two = running_notebook(app, upstream, count=2)
    rita = signed_in(app, "rita")
    token = csrf_token(rita, "/renter/notebooks")
    assert rita.post(f"/renter/notebooks/{mine.id}/open",
                     data={"csrf_token": token}).status_code == 404
    rene = signed_in(app, "rene")
    assert rene.post(f"/renter/notebooks/{mine.id}/open").status_code == 400  # no CSRF
    page = rene.get(f"/renter/notebooks/{two.id}").get_data(as_text=True)
    assert 'data-role="lab-0"' in page and 'data-role="lab-1"' in page  # the chooser
    chose = open_page(rene, two.id)  # which one?
    assert chose.status_code == 303
    assert "Choose a running subtask" in rene.get(chose.headers["Location"]).get_data(
        as_text=True)
    assert open_page(rene, two.id, replica=str(mine.replica)).status_code == 303  # not its
    assert open_page(rene, two.id, replica="1e3").status_code == 303
    second = open_page(rene, two.id, replica=str(two.replicas[1]))
    assert second.status_code == 200 and "(lab-1)" in second.get_data(as_text=True)
    with app.app_context():
        Replica.update(state="pending", address="").where(Replica.task == mine.run).execute()
        assert NotebookGrant.select().count() == 1
    page = rene.get(f"/renter/notebooks/{mine.id}").get_data(as_text=True)
    assert 'id="open-notebook" disabled' in page
    refused = open_page(rene, mine.id)
    assert refused.status_code == 303
    assert "not running" in rene.get(refused.headers["Location"]).get_data(as_text=True)


# --- who may reach which replica ---------------------------------------------------------


def test_another_renter_gets_403_and_no_session_goes_to_sign_in(app, world, upstream, nb):
    mine = running_notebook(app, upstream)
    hers = running_notebook(app, upstream, user="rita")
    rita = signed_in(app, "rita")
    opened(rita, nb, hers)
    assert echo(rita, nb, hers.replica)["length"] == 0
    for path in (f"/nb/{mine.replica}/echo", f"/nb/{mine.replica}/", "/nb/999999/lab",
                 "/nb/99999999999999999999/lab"):
        refused = rita.get(path, base_url=nb)
        assert refused.status_code in (403, 404), path
    assert rita.get(f"/nb/{mine.replica}/echo", base_url=nb).status_code == 403
    assert rita.put(f"/nb/{mine.replica}/echo", base_url=nb, data=b"x").status_code == 403

    anonymous = app.test_client()
    navigate = anonymous.get(f"/nb/{mine.replica}/lab", base_url=nb)
    assert navigate.status_code == 303
    # Back to the notebooks list, never to one notebook: see tests/unit/test_headers.py.
    assert navigate.headers["Location"] == (
        f"http://localhost:{app.config['PORT']}/login?next=%2Frenter%2Fnotebooks")
    script = anonymous.get(f"/nb/{mine.replica}/api/status", base_url=nb,
                           headers={"Sec-Fetch-Mode": "cors"})
    assert script.status_code == 401
    assert anonymous.post(f"/nb/{mine.replica}/api/kernels", base_url=nb).status_code == 401
    forged = anonymous.get(f"/nb/{mine.replica}/lab", base_url=nb,
                           headers={"Cookie": "hourglass_notebook=guess"})
    assert forged.status_code == 303


def test_signing_out_ends_that_sign_ins_notebook_access(app, world, upstream, nb):
    notebook = running_notebook(app, upstream)
    first, second = signed_in(app, "rene"), signed_in(app, "rene")  # two browsers
    opened(first, nb, notebook)
    opened(second, nb, notebook)
    echo(first, nb, notebook.replica)
    token = csrf_token(first, "/renter/notebooks")
    assert first.post("/logout", data={"csrf_token": token}).status_code == 302
    gone = first.get(f"/nb/{notebook.replica}/echo", base_url=nb)
    assert gone.status_code == 303 and "/login?next=" in gone.headers["Location"]
    assert echo(second, nb, notebook.replica)["length"] == 0  # the other sign-in keeps it
    with app.app_context():
        assert NotebookAccess.select().count() == 1
        User.update(session_nonce="reset").where(User.name == "rene").execute()
    assert second.get(f"/nb/{notebook.replica}/echo", base_url=nb).status_code == 303


def test_a_notebook_that_stopped_is_not_running_any_more(app, world, upstream, nb):
    notebook = running_notebook(app, upstream)
    rene = signed_in(app, "rene")
    opened(rene, nb, notebook)
    with app.app_context():
        Replica.update(state="stopped").where(Replica.id == notebook.replica).execute()
    stopped = rene.get(f"/nb/{notebook.replica}/lab", base_url=nb)
    assert stopped.status_code == 503 and "not running" in stopped.get_data(as_text=True)
    with app.app_context():
        Replica.update(state="running").where(Replica.id == notebook.replica).execute()
        Task.update(deleted=True).where(Task.id == notebook.run).execute()
    assert rene.get(f"/nb/{notebook.replica}/lab", base_url=nb).status_code == 503
    with app.app_context():
        Task.update(deleted=False).where(Task.id == notebook.run).execute()
        Replica.update(address="127.0.0.1:9").where(Replica.id == notebook.replica).execute()
    silent = rene.get(f"/nb/{notebook.replica}/lab", base_url=nb)
    assert silent.status_code == 502 and "not answering" in silent.get_data(as_text=True)
    assert 'http-equiv="refresh"' in silent.get_data(as_text=True)  # it tries again


# --- forwarding ----------------------------------------------------------------------------


def test_requests_carry_the_token_and_nothing_of_the_browsers(app, world, upstream, nb,
                                                               caplog):
    notebook = running_notebook(app, upstream)
    caplog.set_level(logging.DEBUG)  # requests' and urllib3's debug logs too
    rene = signed_in(app, "rene")
    opened(rene, nb, notebook)
    seen = echo(rene, nb, notebook.replica, "api/contents/a%20b/echo?x=1&token=bad&y=%2F",
                headers={"Authorization": "Bearer hg_stolen", "X-Custom": "kept",
                         "Referer": "http://localhost/renter/", "X-Forwarded-For": "1.2.3.4"})
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["authorization"] == sha256(f"token {notebook.secret}")
    assert "cookie" not in headers and "referer" not in headers  # the portal's cookie stays
    assert "x-forwarded-for" not in headers and headers["x-custom"] == "kept"
    assert headers["host"] == upstream.address and headers["accept-encoding"] == "identity"
    assert seen["path"] == f"/nb/{notebook.replica}/api/contents/a b/echo"
    assert seen["query"] == "x=1&y=%2F"
    posted = rene.post(f"/nb/{notebook.replica}/echo", base_url=nb, data=b"hello",
                       headers={"Origin": nb, "Content-Type": "text/plain"})
    assert posted.get_json()["length"] == 5 and posted.get_json()["method"] == "POST"
    foreign = rene.post(f"/nb/{notebook.replica}/echo", base_url=nb, data=b"x",
                        headers={"Origin": "http://localhost"})  # the portal's origin
    assert foreign.status_code == 403

    redirect = rene.get(f"/nb/{notebook.replica}/redirect", base_url=nb)
    assert redirect.status_code == 302 and redirect.headers["Location"] == "/nb/1/lab?x=1"
    page = rene.get(f"/nb/{notebook.replica}/page", base_url=nb)
    body = page.get_data(as_text=True)
    assert body == f'<body data-jupyter-api-token="{"0" * 43}">{"0" * 43}</body>'
    assert page.headers["X-Seen"] == "0" * 43 and page.headers["Content-Type"] == \
        "text/html; charset=utf-8"
    for answer in (redirect, page):
        assert "Set-Cookie" not in answer.headers
        assert notebook.secret not in str(answer.headers)
    big = rene.get(f"/nb/{notebook.replica}/big", base_url=nb)
    assert big.status_code == 200 and big.data == b"x" * 3 * MIB
    assert notebook.secret not in caplog.text
    assert "127.0.0.1" in caplog.text  # requests' debug log was on, and recorded


class GatedBody(io.RawIOBase):
    """``size`` bytes of an upload that stops after ``first`` bytes until ``gate`` opens:
    a proxy that held the whole body before sending it would never see the rest."""

    def __init__(self, size, first, gate):
        self.left, self.first, self.gate, self.sent = size, first, gate, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent >= self.first and not self.gate.wait(10):
            raise AssertionError("the upstream saw nothing before the upload ended")
        n = min(len(buffer), self.left, 256 * 1024)
        buffer[:n] = b"u" * n
        self.left -= n
        self.sent += n
        return n


def test_a_large_upload_streams_through(app, world, upstream, nb):
    notebook = running_notebook(app, upstream)
    rene = signed_in(app, "rene")
    opened(rene, nb, notebook)
    size = 20 * MIB
    environ = EnvironBuilder(f"/nb/{notebook.replica}/echo", base_url=nb, method="PUT",
                             headers={"Origin": nb}).get_environ()
    # As a server gives it: the body still arriving while the proxy reads it.
    environ.update({"wsgi.input": GatedBody(size, MIB, upstream.first_chunk),
                    "CONTENT_LENGTH": str(size)})
    answer = rene.open(Request(environ))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["length"] == size
    assert answer.get_json()["sha256"] == hashlib.sha256(b"u" * size).hexdigest()


def test_the_token_is_masked_across_chunks_and_dropped_from_urls():
    secret = "s3cr3t-token"
    chunks = [b"a s3c", b"r3t-to", b"ken b s3cr3t-token", b"!"]
    assert b"".join(forward.masked_chunks(chunks, secret)) == \
        b"a 000000000000 b 000000000000!"
    assert forward.without_token("a=1&token=x&TOKEN=y&%74oken=z&b=&tokens=2") == \
        "a=1&b=&tokens=2"
    environ = {"RAW_URI": "/nb/7/api/x%2Fy?token=t&q=1", "PATH_INFO": "/nb/7/api/x/y"}
    assert forward.upstream_path(environ, 7) == "/nb/7/api/x%2Fy?q=1"
    assert forward.upstream_path({"PATH_INFO": "/nb/7/a b", "QUERY_STRING": ""}, 7) == \
        "/nb/7/a%20b"


def test_the_settings_of_the_two_origins(instance, monkeypatch):
    from portal.config import ConfigError, from_environment

    monkeypatch.setenv("PORT", "9000")
    assert from_environment(instance)["NOTEBOOK_PORT"] == 9001
    monkeypatch.setenv("HOURGLASS_NOTEBOOK_URL", "https://nb.lab.example/")
    assert from_environment(instance)["NOTEBOOK_URL"] == "https://nb.lab.example"
    for name, value in (("HOURGLASS_NOTEBOOK_PORT", "abc"), ("HOURGLASS_NOTEBOOK_PORT", "0"),
                        ("HOURGLASS_NOTEBOOK_URL", "nb.lab.example"),
                        ("HOURGLASS_PORTAL_URL", "ftp://lab.example"),
                        ("HOURGLASS_PORTAL_URL", "https://lab.example/?x=1")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name):
            from_environment(instance)
        monkeypatch.delenv(name)


def test_configured_public_urls_are_used_for_both_ways(app, world, upstream, nb):
    app.config.update(NOTEBOOK_URL="https://nb.lab.example", PORTAL_URL="https://lab.example")
    proxy = app.extensions["hourglass.proxy"]
    proxy.config.update(NOTEBOOK_URL="https://nb.lab.example",
                        PORTAL_URL="https://lab.example")
    notebook = running_notebook(app, upstream)
    rene = signed_in(app, "rene")
    page = open_page(rene, notebook.id).get_data(as_text=True)
    assert ACTION_RE.search(page).group(1) == "https://nb.lab.example/_hourglass/enter"
    answer = app.test_client().get(f"/nb/{notebook.replica}/lab", base_url=nb)
    assert answer.headers["Location"].startswith("https://lab.example/login?next=")
    with app.app_context():  # the browser on https://lab.example sends that Origin
        assert NotebookGrant.get().origin == "https://lab.example"
