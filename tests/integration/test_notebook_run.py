"""A notebook on real Podman: JupyterLab in the notebook image with a fake TPU, reached
from the host at ``Replica.address`` with the run's token, and files that outlive a stop.

The test drives the leader's pass (``Reconciler.run``) itself, as test_scheduler does.
"""

import os
import time

import pytest
import requests

from portal.datasets import create_dataset
from portal.models import Replica, Task
from portal.notebook_folders import code_folder
from portal.notebooks import active_run, create_notebook, start_notebook, stop_notebook
from portal.reasons import english
from portal.specs import create_resource, parse_spec, save_spec
from portal.users import create_user
from portal.versions import latest
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from tests.conftest import PASSWORD
from tests.fake_hosts import make_sophgo_host
from tests.support import fund, wait_for
from tests.unit.test_algorithms import uploaded

pytestmark = pytest.mark.podman


@pytest.fixture
def lab(instance, podman_service, jupyter_image, tmp_path, monkeypatch):
    """An app whose local node has 2 fake BM1684X chips, a spec "lab1" (1 CPU, 1 GB, 1 chip),
    a funded renter, and a reconciler that knows the data folder."""
    from app import create_app
    from portal import db

    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 2)])
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    monkeypatch.setenv("HOURGLASS_HOST_ROOT", str(host))
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(podman_service.url, host_root=host).run()
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec("lab1", "1", "1", "1", {tpu: "1"}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    reconciler = Reconciler(podman_service.url, host_root=host, grace=2,
                            data_root=app.config["DATA_ROOT"])
    backend = PodmanBackend(podman_service.url)
    yield app, renter, reconciler, backend
    for replica in Replica.select().where(Replica.container != ""):
        backend.remove(replica.container)
    ctx.pop()


def drive(reconciler, run, state, timeout=60):
    """Run the leader's pass until ``run`` (a Task) is in ``state``; the run, read again."""
    def there():
        reconciler.run()
        return Task.get_by_id(run.id).state == state
    wait_for(there, timeout=timeout, interval=0.2, what=f"run {run.id} to be {state}")
    return Task.get_by_id(run.id)


def jupyter(replica, path):
    return f"http://{replica.address}/nb/{replica.id}/api/{path}"


def first_answer(url, token, timeout=30):
    """Poll ``url`` with the token every 50 ms until it answers 200; (response, seconds)."""
    started = time.monotonic()

    def answers():
        try:
            response = requests.get(url, headers={"Authorization": f"token {token}"},
                                    timeout=2)
        except requests.ConnectionError:
            return None
        return response if response.status_code == 200 else None

    response = wait_for(answers, timeout=timeout, interval=0.05, what=f"JupyterLab at {url}")
    return response, time.monotonic() - started


def test_a_notebook_serves_jupyterlab_with_its_token_and_keeps_its_files(lab):
    app, renter, reconciler, backend = lab
    dataset = latest(create_dataset(renter, "digits", "",
                                    [uploaded(renter, "train.csv", b"1,2,3\n")]))
    notebook = create_notebook(renter, "my lab", "localhost/hourglass-jupyter:latest", "lab1",
                               "default", dataset_version=dataset.id)
    folder = code_folder(app.config["DATA_ROOT"], notebook)
    assert folder.is_dir() and (folder.stat().st_uid, folder.stat().st_gid) == (1000, 1000)

    first = drive(reconciler, active_run(notebook), "running")
    replica = Replica.get(Replica.task == first)
    assert replica.address.endswith(":8888"), replica.address
    status, seconds = first_answer(jupyter(replica, "status"), first.secret)
    print(f"\nnotebook replica running to /api/status answering from the host in {seconds:.2f} s")
    assert "started" in status.json()
    assert requests.get(jupyter(replica, "status"), timeout=5).status_code == 403
    assert requests.get(jupyter(replica, "status"), timeout=5,
                        headers={"Authorization": "token wrong"}).status_code == 403

    def run(*argv):
        result = backend.exec(replica.container, list(argv))
        assert result.exit_code == 0, result.stderr
        return result.stdout.strip()

    assert "bm-sophon0" in run("ls", "/dev").split()  # the renter's first chip
    assert run("id", "-u") == "1000" and run("pwd") == "/code"
    assert run("cat", "/dataset/train.csv") == "1,2,3"
    assert backend.exec(replica.container, ["touch", "/dataset/x"]).exit_code != 0  # read-only
    # The token is JupyterLab's alone: not in HOURGLASS_* variables, arguments or the log.
    env = run("env").splitlines()
    assert [line for line in env if first.secret in line] == [f"JUPYTER_TOKEN={first.secret}"]
    with backend.client() as client:
        attrs = client.containers.get(replica.container).attrs
    argv = [attrs["Path"], *attrs["Args"]]
    assert f"--ServerApp.base_url=/nb/{replica.id}/" in argv and first.secret not in str(argv)
    assert first.secret not in "".join(backend.logs(replica.container))
    assert first.secret not in first.env

    put = requests.put(jupyter(replica, "contents/hello.txt"), timeout=10,
                       headers={"Authorization": f"token {first.secret}"},
                       json={"type": "file", "format": "text", "content": "kept\n"})
    assert put.status_code in (200, 201), put.text
    assert (folder / "hello.txt").read_text() == "kept\n"
    assert os.stat(folder / "hello.txt").st_uid == 1000

    stop_notebook(notebook)
    assert drive(reconciler, first, "stopped").state == "stopped"

    second = start_notebook(notebook)
    assert second.id != first.id and second.secret != first.secret
    second = drive(reconciler, second, "running")
    again = Replica.get(Replica.task == second)
    first_answer(jupyter(again, "status"), second.secret)
    read = requests.get(jupyter(again, "contents/hello.txt"), timeout=10,
                        headers={"Authorization": f"token {second.secret}"})
    assert read.status_code == 200 and read.json()["content"] == "kept\n"
    assert requests.get(jupyter(again, "status"), timeout=5,
                        headers={"Authorization": f"token {first.secret}"}).status_code == 403
    assert Task.get_by_id(first.id).deleted  # the earlier run is hidden; its rows stay

    stop_notebook(notebook)
    assert drive(reconciler, second, "stopped").state == "stopped"
    assert Replica.get_by_id(again.id).charged > 0  # billed like any task


def test_without_a_data_folder_a_notebook_fails_with_the_reason(lab):
    app, renter, reconciler, backend = lab
    blind = Reconciler(reconciler.local_url, host_root=reconciler.host_root, grace=2)
    run = active_run(create_notebook(renter, "lab", "localhost/hourglass-jupyter:latest",
                                     "lab1", "default"))
    run = drive(blind, run, "failed", timeout=15)
    replica = Replica.get(Replica.task == run)
    assert "no data folder" in english(replica.reason) and replica.container == ""
