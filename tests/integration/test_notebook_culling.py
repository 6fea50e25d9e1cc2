"""Idle culling on real Podman: JupyterLab in the notebook image, a pool culling after one
"minute" (made 2 seconds), the leader's pass (``Reconciler.run``) driven by the test.

An idle notebook is stopped as culled and billed up to its container's end; one whose
kernel runs ``time.sleep`` (the code sent over the kernel's WebSocket, which is then
closed, as a browser closed) is not stopped however many passes go by.
"""

import json
import time
import uuid
from datetime import timedelta

import pytest
import requests
from simple_websocket import Client

from portal import ledger
from portal.models import Replica, Task, utcnow
from portal.notebooks import active_run, create_notebook
from portal.pools import default_pool, set_pool_limits
from portal.reasons import CULLED
from tests.integration.test_notebook_run import drive, first_answer, jupyter, lab  # noqa: F401
from tests.support import wait_for

pytestmark = pytest.mark.podman

IMAGE = "localhost/hourglass-jupyter:latest"


@pytest.fixture
def culled_lab(lab):  # noqa: F811 (the fixture)
    """``lab`` with the default pool culling after 1 minute, a minute being 2 seconds."""
    _app, _renter, reconciler, _backend = lab
    reconciler.culling_minute = timedelta(seconds=2)
    set_pool_limits(default_pool(), cull_idle_minutes=1)
    return lab


def running_lab(reconciler, renter, name):
    """A notebook of ``renter``'s started, running and answering; (run, replica)."""
    notebook = create_notebook(renter, name, IMAGE, "lab1", "default")
    run = drive(reconciler, active_run(notebook), "running")
    replica = Replica.get(Replica.task == run)
    first_answer(jupyter(replica, "status"), run.secret)
    return run, replica


class Socket(Client):
    """simple-websocket's client leaves the port out of ``Host``; send it as browsers do."""

    def handshake(self):
        self.host = f"{self.host}:{self.port}"
        super().handshake()


def execute(replica, token, code):
    """Start a kernel and send it ``code`` over its WebSocket, then close the socket (the
    browser goes away); the kernel's id."""
    headers = {"Authorization": f"token {token}"}
    kernel = requests.post(jupyter(replica, "kernels"), headers=headers, timeout=30,
                           json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    url = jupyter(replica, f"kernels/{kernel_id}/channels").replace("http://", "ws://")
    ws = Socket(url, headers=headers)
    session = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the kernel says it is busy with our code
        message = json.loads(ws.receive(timeout=5) or "{}")
        if (message.get("msg_type") == "status"
                and message.get("content", {}).get("execution_state") == "busy"
                and message.get("parent_header", {}).get("session") == session):
            break
    else:
        pytest.fail("the kernel never became busy")
    ws.close()
    return kernel_id


def test_an_idle_notebook_is_culled_and_billed_up_to_its_end(culled_lab):
    app, renter, reconciler, backend = culled_lab
    run, replica = running_lab(reconciler, renter, "idle lab")
    stopped = drive(reconciler, run, "stopped", timeout=60)
    assert stopped.stop_reason == CULLED
    replica = Replica.get_by_id(replica.id)
    assert replica.state == "stopped" and replica.reason == CULLED
    assert replica.last_activity_at is not None and replica.finished_ns is not None

    def settled():
        reconciler.run()
        return Replica.get_by_id(replica.id).settled

    wait_for(settled, timeout=20, interval=0.2, what="the culled replica to be settled")
    replica = Replica.get_by_id(replica.id)
    seconds = ledger.billed_seconds(replica.started_ns, replica.finished_ns)
    assert replica.billed_seconds == seconds > 0
    assert replica.charged == ledger.cost(seconds, replica.price_per_hour) > 0


def test_a_busy_kernel_with_no_browser_is_not_culled(culled_lab):
    app, renter, reconciler, backend = culled_lab
    run, replica = running_lab(reconciler, renter, "busy lab")
    execute(replica, run.secret, "import time; time.sleep(60)")
    for _ in range(8):  # 8 passes over more than 4 "minutes"
        reconciler.run()
        time.sleep(1.2)
    run = Task.get_by_id(run.id)
    assert run.state == "running" and not run.stop_requested
    kernels = requests.get(jupyter(replica, "kernels"), timeout=5,
                           headers={"Authorization": f"token {run.secret}"}).json()
    assert [k["execution_state"] for k in kernels] == ["busy"]
    assert [k["connections"] for k in kernels] == [0]  # nobody watches it
    seen = Replica.get_by_id(replica.id).last_activity_at
    assert seen is not None and (utcnow() - seen).total_seconds() < 5
