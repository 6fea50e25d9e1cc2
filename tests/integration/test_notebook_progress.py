"""Spawn progress on real Podman with the real JupyterLab image: while a notebook starts its
page shows the container starting or JupyterLab not answering yet, and
``GET /api/v1/notebooks/<id>/ready`` says ready within a few seconds of the container's
start, the moment JupyterLab answers.

The test drives the leader's pass (``Reconciler.run``) itself, as test_notebook_run does.
"""

import re
import threading
import time

import pytest
import requests

from portal.models import Replica
from portal.notebooks import active_run, create_notebook
from tests.conftest import PASSWORD
from tests.integration.test_notebook_run import lab  # noqa: F401 (the fixture)
from tests.support import login, wait_for

pytestmark = pytest.mark.podman
STEP_RE = re.compile(r'id="notebook-progress" data-step="(\d)"')


def shown_step(client, notebook_id):
    body = client.get(f"/renter/notebooks/{notebook_id}").get_data(as_text=True)
    match = STEP_RE.search(body)
    return (int(match.group(1)) if match else None), body


def test_the_page_shows_the_start_and_ready_answers_once_jupyterlab_does(lab):  # noqa: F811
    app, renter, reconciler, backend = lab
    client = app.test_client()
    assert login(client, "renter", "rene", PASSWORD).status_code == 302
    notebook = create_notebook(renter, "lab", "localhost/hourglass-jupyter:latest", "lab1",
                               "default")
    run = active_run(notebook)
    seen = [shown_step(client, notebook.id)[0]]
    assert seen == [1]

    def running():
        reconciler.run()
        seen.append(shown_step(client, notebook.id)[0])
        replica = Replica.get(Replica.task == run)
        return replica if replica.state == "running" and replica.address else None

    replica = wait_for(running, timeout=60, interval=0.1, what="the notebook to run")
    step, body = shown_step(client, notebook.id)
    seen.append(step)
    assert {2, 3} & set(seen), seen  # the container starting, or JupyterLab not answering yet
    if step == 3:
        assert 'id="open-notebook" disabled' in body and "data-open=" not in body

    # A watcher asks JupyterLab itself every 20 ms, to tell when it first answered.
    direct = f"http://{replica.address}/nb/{replica.id}/api/status"
    first = {}

    def watch():
        while "at" not in first and time.monotonic() < deadline:
            try:
                if requests.get(direct, timeout=1, headers={
                        "Authorization": f"token {run.secret}"}).status_code == 200:
                    first["at"] = time.monotonic()
            except requests.RequestException:
                pass
            time.sleep(0.02)

    deadline = time.monotonic() + 30
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    answer = client.get(f"/api/v1/notebooks/{notebook.id}/ready?wait=10")
    while not answer.json["ready"] and time.monotonic() < deadline:
        answer = client.get(f"/api/v1/notebooks/{notebook.id}/ready?wait=10")
    answered, answered_ns = time.monotonic(), time.time_ns()
    watcher.join(timeout=30)
    assert answer.json["ready"] is True, answer.json
    since_start = (answered_ns - replica.started_ns) / 1e9
    late = answered - first["at"]
    print(f"\ncontainer start to ready: {since_start:.2f} s; after JupyterLab first "
          f"answered: {late * 1000:.0f} ms (the call waited {answer.json['waited_ms']} ms)")
    # JupyterLab itself takes 1-1.5 s on an idle machine, several on a busy one: the bound
    # is loose; "the moment it answers" is ``late``.
    assert since_start < 30, since_start
    assert late < 0.5, late  # the moment it answers, not a poll later
    assert answer.json["step"] == 4 and answer.json["replicas"][0]["ready"] is True
    assert run.secret not in answer.get_data(as_text=True)

    # It is reachable indeed, and the page offers Open at once.
    status = requests.get(f"http://{replica.address}/nb/{replica.id}/api/status", timeout=5,
                          headers={"Authorization": f"token {run.secret}"})
    assert status.status_code == 200
    step, body = shown_step(client, notebook.id)
    assert step == 4 and f'data-open="{notebook.id}"' in body
    assert run.secret not in body
