"""Spawn progress: the steps of a starting notebook run
(``portal.notebook_progress.progress``), the readiness check (``portal.proxy.ready``), the
notebook pages' step indicator and Open, and the long-polling ``GET /api/v1/notebooks/<id>/ready``.

JupyterLab is stood in for by a real HTTP server on a thread that answers
``/nb/<replica>/api/status`` (200 with the run's token, 403 without) once it is told to;
replica states the scheduler would write are set directly, as in test_notebooks.
"""

import socket
import threading
import time

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from portal import notebook_progress, notebook_views, notebooks, reasons
from portal.api.registry import OPERATIONS
from portal.models import Node, Notebook, Replica, Task, User
from portal.proxy import access, ready
from portal.tokens import create_token
from tests.conftest import PASSWORD
from tests.support import login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import IMAGE, set_state

world = shared.world  # pools, nodes (box in the default pool), specs, renters rene and rita


class Lab:
    """A stand-in for JupyterLab on 127.0.0.1: ``/nb/<id>/api/status`` answers 200 to
    ``Authorization: token <secret>`` once ``answering`` is set, 403 to another token;
    before that the port refuses nothing but answers 503 (JupyterLab still starting).
    ``asked`` counts the requests; ``seen`` keeps their paths and query strings."""

    def __init__(self):
        self.secret = None
        self.answering = threading.Event()
        self.asked = 0
        self.seen = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.address = f"127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def app(self, environ, start_response):
        request = Request(environ)
        self.asked += 1
        self.seen.append(request.full_path)
        if not request.path.endswith("/api/status"):
            response = Response("no", status=404)
        elif request.headers.get("Authorization") != f"token {self.secret}":
            response = Response("forbidden", status=403)
        elif not self.answering.is_set():
            response = Response("starting", status=503)
        else:
            response = Response('{"started": "now"}', mimetype="application/json")
        return response(environ, start_response)

    def answer_after(self, seconds):
        timer = threading.Timer(seconds, self.answering.set)
        timer.start()
        return timer

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lab():
    server = Lab()
    yield server
    server.stop()


@pytest.fixture
def closed_address():
    """``127.0.0.1:<port>`` where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def renter(name="rene"):
    return User.get(User.name == name)


def start(app, count=1):
    """A started notebook of rene's (spec "1 TPU", default pool): (notebook id, run id)."""
    with app.app_context():
        notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                         count=count)
        return notebook.id, notebooks.active_run(notebook).id


def replica_ids(app, run_id):
    with app.app_context():
        return [r.id for r in Replica.select().where(Replica.task == run_id).order_by(Replica.id)]


def running_at(app, run_id, address, lab=None, replica=None):
    """What the scheduler writes once the container runs: state, node, address."""
    with app.app_context():
        box = Node.get(Node.name == "box")
        query = Replica.update(state="running", node=box, address=address)
        query.where(Replica.id == replica if replica else Replica.task == run_id).execute()
        if lab is not None:
            lab.secret = Task.get_by_id(run_id).secret


def progress_of(app, notebook_id):
    with app.app_context():
        view = ready.mark([notebook_views.notebook_view(Notebook.get_by_id(notebook_id))])[0]
        return notebook_progress.progress(view, view.answering), view


def signed_in(app, name="rene"):
    client = app.test_client()
    assert login(client, "renter", name, PASSWORD).status_code == 302
    return client


def page(client, notebook_id, **params):
    headers = {"HX-Request": "true"} if params else {}
    return client.get(f"/renter/notebooks/{notebook_id}", query_string=params,
                      headers=headers).get_data(as_text=True)


def bearer(app, name):
    with app.app_context():
        return {"Authorization": f"Bearer {create_token(renter(name), 'test')[1]}"}


def ready_api(client, notebook_id, headers, **params):
    return client.get(f"/api/v1/notebooks/{notebook_id}/ready", query_string=params,
                      headers=headers)


READY_SCHEMA = next(op.response for op in OPERATIONS if op.rule.endswith("/ready"))


# --- the steps ---------------------------------------------------------------------------


def test_each_state_of_a_run_is_its_step_in_words(app, world, lab, closed_address):
    notebook_id, run_id = start(app)
    progress, view = progress_of(app, notebook_id)
    assert (progress.step, progress.text, progress.ready) == (
        1, "Waiting for the scheduler to place it.", False)
    assert [label for _n, label in progress.steps] == [
        "Waiting for a place", "Starting the container", "Waiting for JupyterLab", "Ready"]

    with app.app_context():  # the scheduler's pending reason, as the task page shows it
        Task.update(reason=reasons.stored("no_ready_node", {"pool": "default"})).where(
            Task.id == run_id).execute()
    assert progress_of(app, notebook_id)[0].text == \
        "Waiting for a place: no Ready node in pool default"

    with app.app_context():
        set_state(run_id, "starting", node=Node.get(Node.name == "box"))
    progress = progress_of(app, notebook_id)[0]
    assert (progress.step, progress.text) == (2, "Starting the container on node box")

    running_at(app, run_id, "")  # the container runs; its address not known yet
    assert progress_of(app, notebook_id)[0].step == 3
    running_at(app, run_id, closed_address)  # known, but nothing listens yet
    progress, view = progress_of(app, notebook_id)
    assert (progress.step, progress.text, view.answering) == (
        3, "Waiting for JupyterLab to answer", frozenset())

    running_at(app, run_id, lab.address, lab)  # listening, still starting: 503
    assert progress_of(app, notebook_id)[0].step == 3
    lab.answering.set()
    progress, view = progress_of(app, notebook_id)
    (replica,) = replica_ids(app, run_id)
    assert (progress.step, progress.text, progress.ready) == (4, "Ready: JupyterLab answers",
                                                              True)
    assert view.answering == {replica} and (progress.answering, progress.replicas) == (1, 1)

    with app.app_context():
        Task.update(stop_requested=True).where(Task.id == run_id).execute()
    assert progress_of(app, notebook_id)[0] is None  # stopping: no steps
    with app.app_context():
        Task.update(stop_requested=False).where(Task.id == run_id).execute()
        set_state(run_id, "stopped")
    assert progress_of(app, notebook_id)[0] is None  # ended


def test_a_notebook_never_started_has_no_steps(app, world):
    with app.app_context():
        notebook = notebooks.create_notebook(renter(), "idle", IMAGE, "1 TPU", "default",
                                         start=False)
    assert progress_of(app, notebook.id)[0] is None


def test_several_subtasks_are_at_the_step_of_the_slowest(app, world, lab, closed_address):
    notebook_id, run_id = start(app, count=2)
    first, second = replica_ids(app, run_id)
    running_at(app, run_id, lab.address, lab, replica=first)
    lab.answering.set()
    assert progress_of(app, notebook_id)[0].step == 1  # lab-1 still waits for a place
    running_at(app, run_id, closed_address, replica=second)
    progress, view = progress_of(app, notebook_id)
    assert (progress.step, progress.answering, progress.replicas) == (3, 1, 2)
    assert view.answering == {first}
    running_at(app, run_id, lab.address, replica=second)
    assert progress_of(app, notebook_id)[0].ready


# --- the readiness check -----------------------------------------------------------------


def test_ready_needs_the_token_and_status_200_and_is_remembered(lab, closed_address):
    lab.secret = "s" * 43
    lab.answering.set()
    wrong = access.Target(replica_id=7, address=lab.address, secret="t" * 43)
    assert not ready.answers(wrong)
    right = access.Target(replica_id=7, address=lab.address, secret=lab.secret)
    assert ready.answers(right)
    assert lab.seen[-1] == "/nb/7/api/status?"  # the token went in a header, not the URL
    asked = lab.asked
    assert ready.answers(right) and lab.asked == asked  # answered once: not asked again
    began = time.monotonic()
    refused = access.Target(replica_id=7, address=closed_address, secret=lab.secret)
    assert not ready.answers(refused)
    assert time.monotonic() - began < ready.TIMEOUT + 0.2
    assert lab.secret not in repr(right)


# --- the pages ---------------------------------------------------------------------------


def test_the_page_shows_each_step_and_enables_open_once_jupyterlab_answers(
        app, world, lab):
    notebook_id, run_id = start(app)
    rene = signed_in(app)
    body = page(rene, notebook_id)
    assert 'id="notebook-progress" data-step="1"' in body
    assert "Step 1 of 4:" in body and "Waiting for the scheduler to place it." in body
    assert 'hx-trigger="every 1s"' in body
    assert 'id="open-notebook" disabled' in body

    with app.app_context():
        set_state(run_id, "starting", node=Node.get(Node.name == "box"))
    body = page(rene, notebook_id)
    assert 'data-step="2"' in body and "Starting the container on node box" in body
    assert 'hx-trigger="load, every 500ms"' in body and "step=2&amp;answering=0" in body

    running_at(app, run_id, lab.address, lab)
    body = page(rene, notebook_id)
    assert 'data-step="3"' in body and "Waiting for JupyterLab to answer" in body
    assert 'id="open-notebook" disabled' in body and "data-open=" not in body
    listing = rene.get("/renter/notebooks").get_data(as_text=True)
    assert "Step 3 of 4: Waiting for JupyterLab to answer" in listing
    assert 'hx-trigger="every 1s"' in listing and "data-open=" not in listing

    lab.answering.set()
    body = page(rene, notebook_id)
    assert 'data-step="4"' in body and 'data-ready="true"' in body
    assert f'data-open="{notebook_id}"' in body and ">Open</button>" in body
    assert 'id="open-notebook" disabled' not in body and 'hx-trigger="every 2s"' in body
    listing = rene.get("/renter/notebooks").get_data(as_text=True)
    assert f'data-open="{notebook_id}"' in listing and "Step " not in listing
    assert 'hx-trigger="every 2s"' in listing
    with app.app_context():
        secret = Task.get_by_id(run_id).secret
    assert secret not in body and secret not in listing


def test_the_pages_refresh_is_held_until_jupyterlab_answers(app, world, lab, monkeypatch):
    notebook_id, run_id = start(app)
    running_at(app, run_id, lab.address, lab)
    rene = signed_in(app)
    lab.answer_after(0.4)
    began = time.monotonic()
    body = page(rene, notebook_id, step=3, answering=0)
    waited = time.monotonic() - began
    assert 0.35 < waited < 1.5, waited  # the moment it answered, not a poll later
    assert 'data-step="4"' in body and f'data-open="{notebook_id}"' in body

    # Showing an older step: answered at once. Nothing changes: held for PAGE_WAIT only.
    began = time.monotonic()
    assert 'data-step="4"' in page(rene, notebook_id, step=2, answering=0)
    assert time.monotonic() - began < 0.5
    other_id, other_run = start(app)
    with app.app_context():
        set_state(other_run, "starting", node=Node.get(Node.name == "box"))
    monkeypatch.setattr("portal.renter.notebooks.PAGE_WAIT", 0.3)
    began = time.monotonic()
    assert 'data-step="2"' in page(rene, other_id, step=2, answering=0)
    assert 0.25 < time.monotonic() - began < 1.0
    for bad in ({"step": "x", "answering": "0"}, {"step": "9", "answering": "0"},
                {"step": "2", "answering": "-1"}):  # not a step it waits on: answered at once
        began = time.monotonic()
        assert 'data-step="2"' in page(rene, other_id, **bad)
        assert time.monotonic() - began < 0.25, bad


# --- GET /api/v1/notebooks/<id>/ready ----------------------------------------------------


def test_the_ready_endpoint_answers_the_moment_jupyterlab_does(app, world, lab):
    notebook_id, run_id = start(app)
    client, rene = app.test_client(), bearer(app, "rene")
    answer = ready_api(client, notebook_id, rene, wait="0")
    assert answer.status_code == 200
    READY_SCHEMA.validate(answer.json, "")
    assert (answer.json["ready"], answer.json["step"], answer.json["state"]) == (
        False, 1, "pending")
    assert answer.json["text"] == "Waiting for the scheduler to place it."

    running_at(app, run_id, lab.address, lab)
    (replica,) = replica_ids(app, run_id)
    lab.answer_after(0.5)
    began = time.monotonic()
    answer = ready_api(client, notebook_id, rene)  # waits up to 5 s
    took = time.monotonic() - began
    assert 0.45 < took < 1.5, took
    READY_SCHEMA.validate(answer.json, "")
    assert answer.json["ready"] is True and answer.json["step"] == 4
    assert answer.json["replicas"] == [{"id": replica, "role": "lab-0", "state": "running",
                                        "ready": True}]
    assert 400 < answer.json["waited_ms"] < 1500
    assert lab.secret not in answer.get_data(as_text=True)
    assert all("token" not in path for path in lab.seen)

    began = time.monotonic()
    assert ready_api(client, notebook_id, rene).json["ready"]  # ready: at once
    assert time.monotonic() - began < 0.5


def test_the_ready_endpoint_waits_no_longer_than_asked(app, world, closed_address):
    notebook_id, run_id = start(app)
    running_at(app, run_id, closed_address)
    client, rene = app.test_client(), bearer(app, "rene")
    began = time.monotonic()
    answer = ready_api(client, notebook_id, rene, wait="1")
    assert 0.9 < time.monotonic() - began < 2.5
    assert (answer.json["ready"], answer.json["step"]) == (False, 3)
    assert answer.json["text"] == "Waiting for JupyterLab to answer"

    with app.app_context():
        set_state(run_id, "stopped")
    began = time.monotonic()
    answer = ready_api(client, notebook_id, rene)  # not running: no wait
    assert time.monotonic() - began < 0.5
    READY_SCHEMA.validate(answer.json, "")
    assert (answer.json["ready"], answer.json["step"], answer.json["state"]) == (
        False, None, "stopped")
    assert answer.json["text"] == "This notebook is not running."


def test_the_ready_endpoint_refuses_bad_waits_and_other_peoples_notebooks(app, world):
    notebook_id, _run = start(app)
    client = app.test_client()
    rene, rita = bearer(app, "rene"), bearer(app, "rita")
    for bad in ("x", "11", "-1", "1.5", "", "1000"):
        answer = ready_api(client, notebook_id, rene, wait=bad)
        assert answer.status_code == 400, bad
        assert answer.json["error"]["message"] == \
            "'wait' must be a whole number of seconds from 0 to 10."
        assert "wait" in answer.json["error"]["fields"]
    assert ready_api(client, notebook_id, rita, wait="0").status_code == 404
    assert ready_api(client, notebook_id + 999, rene, wait="0").status_code == 404
    assert ready_api(client, notebook_id, {}, wait="0").status_code == 401
    rita_session = signed_in(app, "rita")
    assert rita_session.get(f"/api/v1/notebooks/{notebook_id}/ready?wait=0").status_code == 404
    assert rita_session.get(f"/renter/notebooks/{notebook_id}").status_code == 404
    with app.app_context():
        mina = User.get(User.name == "mina")
        miner = {"Authorization": f"Bearer {create_token(mina, 'test')[1]}"}
    assert ready_api(client, notebook_id, miner, wait="0").status_code == 403
