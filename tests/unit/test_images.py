"""The miner's Images page and its JSON twin: who may see it, starting a build (CSRF, one at a
time), its progress and log (the page, the htmx partial that appends only new lines, JSON),
a failing build, and bad input.

The real app on a real database, with a real builder function handed in through the
``IMAGE_BUILDER`` seam: it reports steps and lines as ``build_jupyter_image`` does, and
can be held in the middle of a step so the test sees a running build.
"""

import json
import re
import threading

import pytest

from portal.models import Node
from scheduler.jupyter_image import STEPS, JupyterImageError
from tests.conftest import PASSWORD
from tests.support import csrf_token, login, wait_for

PAGE = "/miner/images"
START = "/miner/images/build"
API = "/api/v1/images/jupyter/build"


class Builder:
    """A builder function driven by the test: ``lines[step]`` are reported in each step;
    ``hold_at`` stops in that step until ``release``; ``fail`` raises like a failed step."""

    def __init__(self):
        self.calls = []
        self.lines = {index: [f"{name}: line {index}"] for index, name in enumerate(STEPS, 1)}
        self.hold_at = None
        self.held = threading.Event()
        self.released = threading.Event()
        self.fail = None

    def __call__(self, image, env=None, progress=None, force=False):
        self.calls.append({"image": image, "env": env, "force": force})
        for index in range(1, len(STEPS) + 1):
            for line in self.lines.get(index, []):
                progress(index, len(STEPS), line)
            if index == self.hold_at:
                self.held.set()
                assert self.released.wait(10), "the test never released the build"
            if self.fail == index:
                raise JupyterImageError(f"{STEPS[index - 1]} failed (exit status 2):\n"
                                        "E: Unable to locate package python3")
        return image


@pytest.fixture
def builder():
    return Builder()


@pytest.fixture
def app(instance, builder):
    """The real app, whose image builds run ``builder`` (the ``IMAGE_BUILDER`` seam)."""
    from app import create_app
    from portal import db

    app = create_app({"TESTING": True, "IMAGE_BUILDER": builder})
    with app.app_context():
        db.upgrade()
    yield app
    builder.released.set()
    app.extensions["hourglass.image_builds"].wait(10)
    db.database.close()


@pytest.fixture
def miner(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    return client


def builds(app):
    return app.extensions["hourglass.image_builds"]


def start(client, force="0"):
    return client.post(START, data={"force": force, "csrf_token": csrf_token(client, PAGE)})


def api_start(client, body=None):
    return client.post(API, json={} if body is None else body,
                       headers={"X-CSRFToken": csrf_token(client, PAGE)})


def finished(app):
    builds(app).wait(10)
    return builds(app).snapshot(0)


def log_lines(html):
    """{number: text} of the log lines in a page or partial."""
    return {int(n): text for n, text in re.findall(r'<span data-line="(\d+)">([^<]*)\n</span>',
                                                   html)}


# --- who may see it ------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_miner_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/miner/login" in response.headers["Location"]
    assert client.get(API).status_code == 401


def test_a_renter_may_not_see_or_start_builds(client, app, accounts, builder):
    login(client, "renter", "rene", PASSWORD)
    assert client.get(PAGE).status_code == 403
    assert client.get(f"{START}?after=0").status_code == 403
    token = csrf_token(client, "/account/tokens")
    assert client.post(START, data={"force": "0", "csrf_token": token}).status_code == 403
    assert client.get(API).status_code == 403
    response = client.post(API, json={}, headers={"X-CSRFToken": token})
    assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    assert builder.calls == [] and builds(app).snapshot()["status"] == "idle"


def test_images_is_in_the_miners_menu(miner):
    html = miner.get("/miner/").get_data(as_text=True)
    assert re.search(rf'<a href="{PAGE}"\s*>Images</a>', html)


# --- the page before any build -------------------------------------------------------------


def test_the_page_explains_the_image_and_lists_each_nodes_images(app, miner):
    image = app.config["JUPYTER_IMAGE"]
    with app.app_context():
        Node.create(name="local", url="unix:///run/a.sock", source="local",
                    images=json.dumps([image, "localhost/other:1"]))
        Node.create(name="far", url="ssh://root@far/run/podman/podman.sock",
                    images=json.dumps(["<b>odd</b>:1"]))
        Node.create(name="new", url="tcp://10.0.0.9:8080")
    html = miner.get(PAGE).get_data(as_text=True)
    assert "<h1>Images</h1>" in html
    assert "needs network access for apt and PyPI" in html and "about a minute" in html
    assert f"<code>{image}</code>" in html
    assert "No build since the server started." in html
    assert 'id="build-image"' in html and 'id="rebuild-image"' in html
    assert 'hx-get=' not in html.split('id="build-poller"')[1].split(">")[0]  # nothing polls
    rows = dict(re.findall(r'<tr data-node="([^"]+)">(.*?)</tr>', html, re.S))
    assert list(rows) == ["far", "local", "new"]
    assert 'badge ok">yes' in rows["local"] and "<code>localhost/other:1</code>" in rows["local"]
    assert 'badge bad">no' in rows["far"] and "&lt;b&gt;odd&lt;/b&gt;:1" in rows["far"]
    assert "none found" in rows["new"]


# --- starting a build ----------------------------------------------------------------------


def test_a_start_without_csrf_is_refused(app, miner, builder):
    assert miner.post(START, data={"force": "0"}).status_code == 400
    response = miner.post(API, json={})
    assert response.status_code == 400 and response.json["error"]["code"] == "csrf"
    response = miner.post(API, json={}, headers={"X-CSRFToken": "forged"})
    assert response.status_code == 400 and response.json["error"]["code"] == "csrf"
    assert builder.calls == [] and builds(app).snapshot()["status"] == "idle"


def test_bad_input_is_refused_and_starts_nothing(app, miner, builder):
    assert start(miner, force="yes").status_code == 400
    response = api_start(miner, {"force": "yes"})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_body"
    assert "'force' must be true or false." in response.json["error"]["message"]
    response = api_start(miner, {"forse": True})
    assert response.status_code == 400 and "Unknown field 'forse'" in (
        response.json["error"]["message"])
    response = miner.post(API, data="force", headers={"X-CSRFToken": csrf_token(miner, PAGE)})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_body"
    for after in ("abc", "-1", "1.5", "9" * 19):
        assert miner.get(f"{START}?after={after}").status_code == 400, after
        response = miner.get(f"{API}?after={after}")
        assert response.status_code == 400, after
        assert response.json["error"]["fields"]["after"] == (
            "'after' is the number of the last log line you have, a whole number.")
    assert builder.calls == [] and builds(app).snapshot()["status"] == "idle"


def test_a_build_shows_its_steps_and_log_on_the_page_and_in_json(app, miner, builder, instance):
    builder.lines[3] = ["wheels: downloading", "Saved ./jupyterlab-4.6.6-py3-none-any.whl",
                        "<script>alert(1)</script>"]
    response = start(miner)
    assert response.status_code == 303 and response.headers["Location"] == PAGE
    build = finished(app)
    assert build["status"] == "succeeded" and build["error"] == ""
    # The build ran with the app's Podman service's containers.conf, as the CLI does.
    [call] = builder.calls
    assert call["image"] == app.config["JUPYTER_IMAGE"] and call["force"] is False
    assert call["env"]["CONTAINERS_CONF"] == str(instance / "containers.conf")

    html = miner.get(PAGE).get_data(as_text=True)
    assert "The build has started" in html  # the flash after the redirect
    assert 'badge ok">succeeded' in html and "Step 4 of 4: image" in html
    assert re.search(r'<progress id="build-progress" max="4" value="4"', html)
    lines = log_lines(html)
    assert list(lines) == list(range(1, 7))
    assert lines[1] == "base image: line 1" and lines[6] == "image: line 4"
    assert lines[5] == "&lt;script&gt;alert(1)&lt;/script&gt;"  # escaped, never run
    assert "<script>alert" not in html

    data = miner.get(API).json
    assert data["status"] == "succeeded" and data["build"] == 1
    assert (data["step"], data["step_count"], data["step_name"]) == (4, 4, "image")
    assert data["started_at"].endswith("Z") and data["finished_at"].endswith("Z")
    assert data["last_line"] == 6 and [line["number"] for line in data["lines"]] == [1, 2, 3,
                                                                                     4, 5, 6]
    assert data["lines"][4]["text"] == "<script>alert(1)</script>"
    after = miner.get(f"{API}?after=4").json
    assert [line["text"] for line in after["lines"]] == ["<script>alert(1)</script>",
                                                         "image: line 4"]


def test_a_running_build_is_followed_by_polling_for_new_lines(app, miner, builder):
    builder.hold_at = 2
    assert start(miner, force="1").status_code == 303
    assert builder.held.wait(5)
    html = miner.get(PAGE).get_data(as_text=True)
    assert 'badge">building' in html and "Step 2 of 4: python version" in html
    assert re.search(r'<progress id="build-progress" max="4" value="1"', html)
    assert re.search(r'id="build-image"\s+disabled', html)  # no second build meanwhile
    assert 'hx-get="/miner/images/build?after=2"' in html and 'hx-trigger="every 1s"' in html
    assert log_lines(html) == {1: "base image: line 1", 2: "python version: line 2"}
    assert miner.get(API).json["force"] is True

    # Polling with the last number: nothing new yet, the same poller again.
    partial = miner.get(f"{START}?after=2").get_data(as_text=True)
    assert log_lines(partial) == {}
    assert 'hx-get="/miner/images/build?after=2"' in partial
    assert 'id="image-build" data-status="running" hx-swap-oob="true"' in partial
    assert 'id="jupyter-image"' not in partial  # not inspected while it runs

    builder.released.set()
    assert finished(app)["status"] == "succeeded"
    partial = miner.get(f"{START}?after=2").get_data(as_text=True)
    assert log_lines(partial) == {3: "wheels: line 3", 4: "image: line 4"}  # only new lines
    assert 'hx-swap-oob="beforeend:#build-log"' in partial
    assert 'data-status="succeeded"' in partial and 'value="4"' in partial
    poller = re.search(r'<div id="build-poller"[^>]*>', partial).group(0)
    assert "hx-get" not in poller  # the build ended: polling stops
    assert 'id="jupyter-image" hx-swap-oob="true"' in partial  # the image's summary again


def test_a_failing_build_shows_its_error(app, miner, builder):
    builder.fail = 2
    assert api_start(miner).status_code == 202
    assert finished(app)["status"] == "failed"
    html = miner.get(PAGE).get_data(as_text=True)
    assert 'badge bad">failed' in html and "Step 2 of 4: python version" in html
    error = re.search(r'<pre class="flash error wrap" id="build-error"[^>]*>(.*?)</pre>', html,
                      re.S)
    assert error and "python version failed (exit status 2)" in error.group(1)
    assert "E: Unable to locate package python3" in error.group(1)
    assert re.search(r'<progress id="build-progress" max="4" value="1"', html)
    data = miner.get(API).json
    assert data["status"] == "failed" and data["error"].startswith("python version failed")
    assert data["lines"][-1]["text"] == "build failed: python version failed (exit status 2):"
    # The buttons work again: a second build runs.
    builder.fail = None
    assert start(miner).status_code == 303
    assert finished(app)["status"] == "succeeded" and len(builder.calls) == 2


def test_two_starts_run_one_build(app, miner, builder):
    builder.hold_at = 1
    first = api_start(miner)
    assert first.status_code == 202 and first.json["status"] == "running"
    assert builder.held.wait(5)
    second = api_start(miner, {"force": True})
    assert second.status_code == 202
    assert second.json["build"] == first.json["build"] == 1
    assert second.json["force"] is False  # the running build, not a new one
    response = start(miner)
    assert response.status_code == 303
    assert "A build is already running" in miner.get(PAGE).get_data(as_text=True)
    builder.released.set()
    assert finished(app)["status"] == "succeeded"
    assert len(builder.calls) == 1


def test_a_new_build_keeps_numbering_lines_and_drops_the_old_log(app, miner, builder):
    assert api_start(miner).status_code == 202
    assert finished(app)["last_line"] == 4
    assert api_start(miner, {"force": True}).status_code == 202
    build = wait_for(lambda: (b := finished(app))["build"] == 2 and b, what="the second build")
    assert build["status"] == "succeeded" and build["force"] is True
    data = miner.get(API).json
    assert [line["number"] for line in data["lines"]] == [5, 6, 7, 8]
    assert miner.get(f"{API}?after=4").json["lines"] == data["lines"]
    assert len(builder.calls) == 2 and builder.calls[1]["force"] is True


def test_the_log_keeps_the_last_lines_only(app, miner, builder):
    builder.lines = {1: [f"line {n}" for n in range(1, 601)]}
    assert api_start(miner).status_code == 202
    assert finished(app)["status"] == "succeeded"
    data = miner.get(API).json
    assert data["last_line"] == 600 and len(data["lines"]) == 500
    assert data["lines"][0] == {"number": 101, "text": "line 101"}
