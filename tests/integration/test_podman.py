"""The Podman service Hourglass starts for itself, its config, and /healthz on it."""

import subprocess

import pytest

from scheduler.podman import PodmanBackend
from scheduler.podman_service import containers_conf_text
from tests.conftest import TEST_LABEL
from tests.support import wait_for

pytestmark = pytest.mark.podman


def test_containers_conf_uses_runc_and_ulimits_within_the_hard_limit():
    import resource

    text = containers_conf_text()
    assert 'runtime = "runc"' in text
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = int(text.split('"nofile=')[1].split(":")[0])
    assert 0 < nofile <= hard


def test_backend_reports_the_podman_version(podman_service):
    version = PodmanBackend(podman_service.url).version()
    cli = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout
    assert version and version in cli


def test_containers_run_with_runc_and_the_project_ulimits(podman_service, test_image):
    """A container started through the API gets runc and the ulimits of our config."""
    with PodmanBackend(podman_service.url).client() as client:
        container = client.containers.create(
            test_image, ["/bin/sh", "-c", "ulimit -n; id -u"], labels={TEST_LABEL: "1"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"])
        try:
            container.start()
            assert container.wait() == 0
            out = b"".join(container.logs(stdout=True, stderr=True)).decode().split()
            container.reload()
            assert container.attrs["OCIRuntime"] == "runc"
        finally:
            container.remove(force=True)
    expected_nofile = containers_conf_text().split('"nofile=')[1].split(":")[0]
    assert out == [expected_nofile, "0"]


def test_stopping_the_service_leaves_containers_running(own_podman_service, test_image):
    service = own_podman_service
    with PodmanBackend(service.url).client() as client:
        container = client.containers.create(test_image, ["sleep", "30"],
                                             labels={TEST_LABEL: "1"})
        container.start()
    service.stop()
    try:
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", container.id],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert state == "true"
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", container.id], capture_output=True)


def test_healthz_is_healthy_with_podman(instance, podman_service, monkeypatch):
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    with app.app_context():
        db.upgrade()
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert body["database"]["ok"] and body["podman"]["version"]
    assert body["scheduler"] == {"ok": True, "state": "stopped", "enabled": False}


def test_healthz_is_503_when_podman_stops(instance, own_podman_service, monkeypatch):
    from app import create_app

    service = own_podman_service
    monkeypatch.setenv("HOURGLASS_PODMAN_URL", service.url)
    monkeypatch.setenv("HOURGLASS_HEALTH_SECONDS", "0.5")
    client = create_app({"TESTING": True}).test_client()
    assert client.get("/healthz").status_code == 200
    service.stop()
    # /healthz answers from its last look at Podman, taken again once it is 0.5 s old.
    response = wait_for(lambda: (r := client.get("/healthz")).status_code == 503 and r,
                        timeout=5, what="/healthz to see Podman gone")
    body = response.get_json()
    assert response.status_code == 503
    assert body["failed"] == ["podman"]
    assert body["podman"]["ok"] is False and body["podman"]["error"]
    assert body["database"]["ok"] is True
