"""The notebooks' JupyterLab image: built without a registry, it serves JupyterLab.

The container is created through the Podman API as the scheduler creates replicas
(all capabilities dropped, no new privileges, an init), with the port published on
127.0.0.1 only.
"""

import os
import subprocess
import time

import pytest
import requests

from scheduler.jupyter_image import (
    COMPLETE,
    JUPYTERLAB_VERSION,
    STEPS,
    JupyterImageError,
    build_jupyter_image,
    download_wheels,
    host_suite,
)
from scheduler.podman import PodmanBackend
from scheduler.podman_service import podman_env
from tests.conftest import TEST_LABEL, free_port
from tests.support import wait_for

pytestmark = pytest.mark.podman

TOKEN = "SECRET-test-token"
BASE_URL = "/x/"


def _image_id(image, env):
    return subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def jupyter(podman_service, jupyter_image):
    """A running JupyterLab container: (container, status URL, first answer, seconds to it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{BASE_URL}api/status"
    with PodmanBackend(podman_service.url).client() as client:
        started = time.monotonic()
        container = client.containers.create(
            jupyter_image, entrypoint=["jupyter-lab"],
            command=["--ip", "0.0.0.0", "--port", "8888", "--no-browser",
                     f"--ServerApp.token={TOKEN}", f"--ServerApp.base_url={BASE_URL}"],
            ports={"8888/tcp": ("127.0.0.1", port)}, labels={TEST_LABEL: "1"},
            cap_drop=["ALL"], no_new_privileges=True, init=True)
        try:
            container.start()

            def answers():
                container.reload()
                assert container.status == "running", b"".join(
                    container.logs(stdout=True, stderr=True)).decode(errors="replace")
                try:
                    return requests.get(url, headers={"Authorization": f"token {TOKEN}"},
                                        timeout=2)
                except requests.ConnectionError:
                    return None

            first = wait_for(answers, timeout=60, interval=0.1, what=f"JupyterLab at {url}")
            seconds = time.monotonic() - started
            print(f"\nJupyterLab container: create to /api/status answering in {seconds:.2f} s")
            yield container, url, first, seconds
        finally:
            container.remove(force=True)


def test_status_answers_with_the_token_only(jupyter):
    _container, url, first, seconds = jupyter
    assert first.status_code == 200
    assert "started" in first.json()
    assert requests.get(url, timeout=5).status_code == 403
    assert requests.get(url, headers={"Authorization": "token wrong"}, timeout=5).status_code \
        == 403
    assert seconds < 60


def test_it_runs_as_uid_1000_in_code_with_the_pinned_jupyterlab(jupyter):
    container = jupyter[0]

    def run(*argv):
        code, (out, err) = container.exec_run(list(argv), demux=True)
        assert code == 0, err
        return (out or b"").decode().strip()

    assert run("id", "-u") == "1000"
    assert run("pwd") == "/code"
    assert run("sh", "-c", "echo $HOME; command -v jupyter-lab") == \
        "/home/jovyan\n/opt/jupyter/bin/jupyter-lab"
    assert run("python3", "-c", "import jupyterlab; print(jupyterlab.__version__)") \
        == JUPYTERLAB_VERSION
    assert run("sh", "-c", "touch /code/x /home/jovyan/y && echo ok") == "ok"


def test_a_second_build_skips_every_step(podman_service, jupyter_image):
    env = podman_env(podman_service.conf)
    before = _image_id(jupyter_image, env)
    calls = []
    started = time.monotonic()
    build_jupyter_image(jupyter_image, env, lambda *call: calls.append(call))
    assert time.monotonic() - started < 15
    assert [(index, count) for index, count, _line in calls] == \
        [(index, len(STEPS)) for index in range(1, len(STEPS) + 1)]
    assert all("skipped" in line for _index, _count, line in calls)
    assert _image_id(jupyter_image, env) == before


def test_a_missing_mmdebstrap_names_its_apt_package(podman_service, tmp_path):
    """No base image yet and no mmdebstrap on PATH: a clear error, and no image made."""
    tools = tmp_path / "bin"
    tools.mkdir()
    os.symlink(subprocess.run(["sh", "-c", "command -v podman"], capture_output=True,
                              text=True, check=True).stdout.strip(), tools / "podman")
    env = {**podman_env(podman_service.conf), "PATH": str(tools)}
    image, base = "localhost/hourglass-test-nojupyter:x", "localhost/hourglass-test-nobase:x"
    calls = []
    with pytest.raises(JupyterImageError, match="apt-get install mmdebstrap"):
        build_jupyter_image(image, env, lambda *call: calls.append(call), base_image=base,
                            cache_dir=tmp_path / "cache")
    assert calls and calls[-1][0] == 1  # it failed in the first step
    for name in (image, base):
        assert subprocess.run(["podman", "image", "exists", name], env=env).returncode == 1


def test_a_failed_wheel_download_shows_pips_output(tmp_path):
    folder = tmp_path / "wheels"
    with pytest.raises(JupyterImageError, match="pip download failed") as failure:
        download_wheels("3.11", folder, "jupyterlab==0.0.1")
    assert "No matching distribution found for jupyterlab==0.0.1" in str(failure.value)
    assert not (folder / COMPLETE).exists()


def test_the_suite_comes_from_os_release(tmp_path):
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    assert host_suite(release) == "trixie"
    release.write_text('PRETTY_NAME="Some Linux"\nID=other\n')
    with pytest.raises(JupyterImageError, match="VERSION_CODENAME"):
        host_suite(release)
