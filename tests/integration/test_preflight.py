"""Preflight: a node that cannot run a replica's container is NotReady before any renter finds
out, and ``/healthz`` and ``make run`` say why; ``/healthz`` never asks Podman per request.

The broken node is a real Podman service whose containers.conf names an init binary that
does not exist: exactly what a machine without catatonit gives ("container-init binary not
found on the host").
"""

import os
import threading

import pytest

from portal.models import Node
from scheduler import podman_service
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.podman_service import LocalPodmanService
from tests.fault_proxy import FaultProxy
from tests.support import wait_for

pytestmark = pytest.mark.podman

NO_INIT = 'init_path = "/nonexistent/catatonit"\n'


@pytest.fixture
def no_catatonit(tmp_path, monkeypatch):
    """A real Podman service that cannot find its init binary."""
    good = podman_service.containers_conf_text()
    with monkeypatch.context() as patch:
        patch.setattr(podman_service, "containers_conf_text",
                      lambda: good.replace("[engine]\n", "[engine]\n" + NO_INIT))
        service = LocalPodmanService(tmp_path / "broken").start()
    yield service
    service.stop()


def test_a_node_without_its_init_binary_is_notready_with_the_fix(
        instance, no_catatonit, test_image, monkeypatch):
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", no_catatonit.url)
    app = create_app({"TESTING": True})
    with app.app_context():
        db.upgrade()
        Discovery(no_catatonit.url, probe_image=test_image).run()
        node = Node.get(Node.source == "local")
        assert not node.ready
        assert "container-init binary not found on the host" in node.reason, node.reason
        assert node.reason.endswith("Fix: install catatonit on the node "
                                    "(apt-get install catatonit)")
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 503 and body["failed"] == ["podman"]
    assert "install catatonit" in body["podman"]["error"] and body["podman"]["version"]


def test_the_local_node_gets_the_canarys_image_built_when_it_lacks_it(
        instance, podman_service, monkeypatch):
    from app import create_app
    from portal import db

    image = f"localhost/hourglass-probe-test-{os.getpid()}:latest"
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    backend = PodmanBackend(podman_service.url)
    assert image not in backend.host_info().images
    try:
        with app.app_context():
            db.upgrade()
            Discovery(podman_service.url, probe_image=image).run()
            node = Node.get(Node.source == "local")
            assert node.ready, node.reason
        assert image in backend.host_info().images
    finally:
        with backend.client() as client:
            client.images.remove(image)


def test_serve_says_before_the_first_page_that_the_node_cannot_run_replicas(
        live_server_factory, no_catatonit):
    server = live_server_factory(HOURGLASS_PODMAN_URL=no_catatonit.url)
    server.flask("db", "upgrade")
    server.start()
    log = server.log()
    warning = log.index("WARNING: the local node cannot run replicas: cannot start a "
                        "container like a replica's: container-init binary not found")
    assert warning < log.index("Listening at")  # gunicorn's first line: before any page
    assert "Fix: install catatonit" in log
    assert server.health()["podman"]["ok"] is False


def test_serve_on_a_sound_node_says_so(live_server):
    assert "Preflight: the local node runs containers as replicas need them" in \
        live_server.log()


def test_healthz_answers_from_its_last_look_without_asking_podman_each_time(
        instance, podman_service, monkeypatch):
    from app import create_app

    with FaultProxy(podman_service.socket) as proxy:
        monkeypatch.setenv("HOURGLASS_PODMAN_URL", proxy.url)
        monkeypatch.setenv("HOURGLASS_HEALTH_SECONDS", "60")
        app = create_app({"TESTING": True})
        codes = []

        def client():
            session = app.test_client()
            codes.extend(session.get("/healthz").status_code for _ in range(25))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [200] * 200
        assert proxy.count("/version") == 1  # one look for 200 answers
        # Podman stops answering: the answers come from the last look meanwhile, and one
        # caller, alone, looks again once that is stale.
        proxy.fault("hang")
        assert app.test_client().get("/healthz").status_code == 200
        app.extensions["hourglass.engine"].max_age = 0.2
        wait_for(lambda: app.test_client().get("/healthz").status_code == 503, timeout=15,
                 what="/healthz to report the silent Podman")
