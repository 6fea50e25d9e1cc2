"""A Podman API service that Hourglass starts for itself when none is configured.

Its socket is ``portal.config.local_podman_socket(instance)``, the default
``HOURGLASS_PODMAN_URL``.

Writes a project-local ``containers.conf`` (runc, cgroupfs, file events,
explicit ulimits within this host's hard limits) into the instance folder and
points only this service at it through ``CONTAINERS_CONF``; the user's global
files are never edited. Stopping the service leaves containers running.
"""

import os
import resource
import subprocess
import time
from pathlib import Path

from podman import PodmanClient

from portal.config import local_podman_socket

ULIMIT_CEILING = 4096


def _ulimit(kind):
    _soft, hard = resource.getrlimit(kind)
    value = ULIMIT_CEILING if hard == resource.RLIM_INFINITY else min(ULIMIT_CEILING, hard)
    return f"{value}:{value}"


def containers_conf_text():
    """The containers.conf this host needs (see DESIGN.md, "Proven on these machines")."""
    return (
        "# Written by Hourglass for its own Podman service; safe to delete.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={_ulimit(resource.RLIMIT_NOFILE)}", '
        f'"nproc={_ulimit(resource.RLIMIT_NPROC)}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def write_containers_conf(path):
    """Write (or refresh) the project-local containers.conf at ``path``; returns it."""
    path = Path(path)
    text = containers_conf_text()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def podman_env(conf_path):
    """The environment for a ``podman`` command that must use our containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(conf_path)}


class LocalPodmanService:
    """``podman system service`` on a socket in ``folder``, for as long as we hold it."""

    def __init__(self, folder):
        folder = Path(folder)
        self.socket = local_podman_socket(folder)
        self.conf = folder / "containers.conf"
        self.log_path = folder / "podman-service.log"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self, timeout=20):
        """Start the service and wait until it answers; raises RuntimeError if it does not."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        write_containers_conf(self.conf)
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=podman_env(self.conf), stdout=log, stderr=log,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited; see {self.log_path}")
            if self.socket.exists() and self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"podman system service did not answer in {timeout}s")

    def _answers(self):
        try:
            with PodmanClient(base_url=self.url, timeout=2) as client:
                return client.ping()
        except Exception:
            return False

    def stop(self, timeout=10):
        """Stop the service (containers keep running under conmon)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
