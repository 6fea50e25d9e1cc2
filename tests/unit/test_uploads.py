"""Restartable uploads (portal.uploads, /api/v1/uploads): pieces appended at the right offset
only, a dropped connection keeps what arrived (through a real server), the size cap, owner
checks, CSRF for sessions, complete/discard and the sweep of stale uploads."""

import os
import socket
import time
from datetime import timedelta

import pytest
import requests

from portal import uploads
from portal.models import Upload, User, utcnow
from portal.tokens import create_token
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login, wait_for

OCTETS = "application/octet-stream"


@pytest.fixture
def tokens(app, accounts):
    """API tokens of rene and of rita, another renter."""
    with app.app_context():
        rita = create_user("rita", "renter", PASSWORD)
        return {"rene": create_token(accounts["renter"], "t")[1],
                "rita": create_token(rita, "t")[1]}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def new(client, token, size, filename="data.bin"):
    answer = client.post("/api/v1/uploads", json={"filename": filename, "size": size},
                         headers=auth(token))
    assert answer.status_code == 201, answer.json
    return answer.json


def put(client, token, key, data, offset=None):
    query = "" if offset is None else f"?offset={offset}"
    return client.put(f"/api/v1/uploads/{key}{query}", data=data,
                      headers={**auth(token), "Content-Type": OCTETS})


def part(app, key):
    return os.path.join(app.config["DATA_ROOT"], "uploads", f"{key}.part")


def test_pieces_are_appended_where_the_received_bytes_end(client, tokens, app):
    content = os.urandom(3 * 2**20 + 11)
    made = new(client, tokens["rene"], len(content))
    assert made["received"] == 0 and made["filename"] == "data.bin"
    key = made["key"]
    assert put(client, tokens["rene"], key, content[:2**20], 0).json["received"] == 2**20
    wrong = put(client, tokens["rene"], key, content[:10], 0)  # sent again: refused
    assert wrong.status_code == 409
    assert wrong.json["error"]["fields"]["received"] == str(2**20)
    assert put(client, tokens["rene"], key, b"x", 2**20 + 5).status_code == 409
    assert client.get(f"/api/v1/uploads/{key}", headers=auth(tokens["rene"])).json[
        "received"] == 2**20
    assert put(client, tokens["rene"], key, content[2**20:], 2**20).json["received"] == \
        len(content)
    with open(part(app, key), "rb") as f:
        assert f.read() == content
    with app.app_context():
        upload, path = uploads.complete(User.get(User.name == "rene"), key)
        assert upload.received == len(content) and path.read_bytes() == content
        uploads.discard(upload)
        assert not path.exists() and Upload.select().count() == 0


def test_a_piece_past_the_size_keeps_what_fitted(client, tokens):
    key = new(client, tokens["rene"], 10)["key"]
    too_much = put(client, tokens["rene"], key, b"0123456789abc", 0)
    assert too_much.status_code == 409
    assert client.get(f"/api/v1/uploads/{key}", headers=auth(tokens["rene"])).json[
        "received"] == 10


def test_the_size_and_name_are_checked(client, tokens, app):
    app.config["UPLOAD_MAX_BYTES"] = 1000
    big = client.post("/api/v1/uploads", json={"filename": "a", "size": 1001},
                      headers=auth(tokens["rene"]))
    assert big.status_code == 409 and "size" in big.json["error"]["fields"]
    for name in ("..", "a/b", "", "a\x00"):
        bad = client.post("/api/v1/uploads", json={"filename": name, "size": 1},
                          headers=auth(tokens["rene"]))
        assert bad.status_code in (400, 409) and "filename" in bad.json["error"]["fields"]
    key = new(client, tokens["rene"], 5)["key"]
    assert put(client, tokens["rene"], key, b"1", "x").status_code == 400
    assert client.put(f"/api/v1/uploads/{key}", json={"a": 1},
                      headers=auth(tokens["rene"])).status_code == 415


def test_another_renters_upload_is_404(client, tokens):
    key = new(client, tokens["rene"], 5)["key"]
    rita = auth(tokens["rita"])
    assert client.get(f"/api/v1/uploads/{key}", headers=rita).status_code == 404
    assert client.put(f"/api/v1/uploads/{key}?offset=0", data=b"x",
                      headers={**rita, "Content-Type": OCTETS}).status_code == 404
    assert client.delete(f"/api/v1/uploads/{key}", headers=rita).status_code == 404
    assert client.get("/api/v1/uploads/not-a-key", headers=rita).status_code == 404
    assert client.delete(f"/api/v1/uploads/{key}", headers=auth(tokens["rene"])) \
        .status_code == 204
    assert client.get(f"/api/v1/uploads/{key}", headers=auth(tokens["rene"])) \
        .status_code == 404


def test_a_session_needs_the_csrf_token(client, accounts):
    login(client, "renter", "rene", PASSWORD)
    body = {"filename": "a", "size": 1}
    assert client.post("/api/v1/uploads", json=body).status_code == 400
    token = csrf_token(client, "/renter/notebooks")
    key = client.post("/api/v1/uploads", json=body, headers={"X-CSRFToken": token}).json["key"]
    assert client.put(f"/api/v1/uploads/{key}", data=b"1",
                      headers={"Content-Type": OCTETS}).status_code == 400
    assert client.put(f"/api/v1/uploads/{key}", data=b"1",
                      headers={"Content-Type": OCTETS, "X-CSRFToken": token}) \
        .json["received"] == 1


def test_complete_refuses_what_is_missing_or_unfinished(app, tokens, client):
    key = new(client, tokens["rene"], 5)["key"]
    put(client, tokens["rene"], key, b"12", 0)
    with app.app_context():
        rene, rita = (User.get(User.name == n) for n in ("rene", "rita"))
        with pytest.raises(uploads.UploadError) as info:
            uploads.complete(rene, key, field="file")
        assert "2 B of 5 B" in info.value.errors["file"]
        with pytest.raises(uploads.UploadMissing):
            uploads.complete(rita, key)


def test_a_stream_that_breaks_midway_keeps_what_arrived(app, tokens, client):
    """The test client's body stream raises after 3 MiB, as a dropped connection does."""
    key = new(client, tokens["rene"], 8 * 2**20)["key"]

    class Breaking:
        sent = 0

        def read(self, n=-1):
            if self.sent >= 3 * 2**20:
                raise OSError("connection reset")
            self.sent += 2**20
            return b"z" * 2**20

    with app.app_context():
        upload = uploads.find(User.get(User.name == "rene"), key)
        with pytest.raises(OSError):
            uploads.append(upload, 0, Breaking())
        assert Upload.get_by_id(upload.id).received == 3 * 2**20
    assert os.path.getsize(part(app, key)) == 3 * 2**20


def test_stale_uploads_are_swept(app, tokens, client):
    old = new(client, tokens["rene"], 5)["key"]
    fresh = new(client, tokens["rene"], 5)["key"]
    with app.app_context():
        Upload.update(created_at=utcnow() - timedelta(days=2)).where(
            Upload.key == old).execute()
        two_days_ago = time.time() - 2 * 86400
        os.utime(part(app, old), (two_days_ago, two_days_ago))
        stray = os.path.join(app.config["DATA_ROOT"], "uploads", "stray.part")
        open(stray, "wb").close()
        os.utime(stray, (two_days_ago, two_days_ago))
        assert uploads.sweep() == 1
        assert [u.key for u in Upload.select()] == [fresh]
        assert not os.path.exists(part(app, old)) and not os.path.exists(stray)
        assert os.path.exists(part(app, fresh))


@pytest.mark.podman  # the live server's fixtures start a Podman service
def test_a_dropped_connection_through_a_real_server_keeps_what_arrived(live_server_factory):
    server = live_server_factory(accounts=True)
    token = server.flask("token", "create", "rene").stdout.strip()
    server.start()
    api = f"{server.url}/api/v1/uploads"
    made = requests.post(api, json={"filename": "big.bin", "size": 6 * 2**20},
                         headers=auth(token), timeout=10).json()
    key = made["key"]
    content = os.urandom(6 * 2**20)
    half = 3 * 2**20 + 12345
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall((f"PUT /api/v1/uploads/{key}?offset=0 HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: {OCTETS}\r\nContent-Length: {len(content)}\r\n\r\n")
                     .encode() + content[:half])
        time.sleep(0.5)
    # the socket is closed midway: what arrived stays, and the client goes on from there
    received = wait_for(lambda: _received(api, key, token) == half and half, timeout=10,
                        what="the received bytes to settle")
    rest = requests.put(f"{api}/{key}?offset={received}", data=content[received:],
                        headers={**auth(token), "Content-Type": OCTETS}, timeout=30)
    assert rest.json()["received"] == len(content)
    stored = os.path.join(server.env["HOURGLASS_INSTANCE"], "data", "uploads", f"{key}.part")
    with open(stored, "rb") as f:
        assert f.read() == content


def _received(api, key, token):
    return requests.get(f"{api}/{key}", headers=auth(token), timeout=5).json()["received"]
