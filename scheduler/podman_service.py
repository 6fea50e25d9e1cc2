"""A Podman API service that Hourglass starts for itself when none is configured.

Its socket is ``portal.config.local_podman_socket(instance)``, the default
``HOURGLASS_PODMAN_URL``.

Writes a project-local ``containers.conf`` (runc, cgroupfs, file events,
explicit ulimits within this host's hard limits) into the instance folder and
points only this service at it through ``CONTAINERS_CONF``; the user's global
files are never edited. Stopping the service leaves containers running.

The service runs in a session of its own (Ctrl-C reaches Hourglass, which
stops it in order), so a Hourglass killed with SIGKILL leaves it running. Its
pid is kept in the instance folder: the next start reuses that service when it
still answers with the same config, else stops it first. Never two.

Starting the service is running ``podman system service``, a process, not an API
call; whether it answers is asked through the API (``PodmanEndpoint.ping``).
"""

import logging
import os
import resource
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from portal import processes
from portal.config import local_podman_socket
from scheduler.podman_endpoint import PodmanEndpoint

log = logging.getLogger(__name__)

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


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a zombie is no service
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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
        self.pid_path = folder / "podman-service.pid"
        self.url = f"unix://{self.socket}"
        self.process = None  # the service we started
        self.pid = None  # its pid, or that of the earlier run's service we reuse
        self.reused = False

    def start(self, timeout=20):
        """Start the service (or reuse the one an earlier run left) and wait until it
        answers; raises RuntimeError if it does not."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        same_conf = self.conf.exists() and self.conf.read_text() == containers_conf_text()
        write_containers_conf(self.conf)
        earlier = self._earlier()
        if earlier is not None:
            if same_conf and self._answers():
                log.info("reusing the Podman service (pid %s) an earlier run started", earlier)
                self.pid, self.reused = earlier, True
                return self
            log.info("stopping the Podman service (pid %s) an earlier run left", earlier)
            self._end(earlier)
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=podman_env(self.conf), stdout=out, stderr=out,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            )
        self.pid = self.process.pid
        self.pid_path.write_text(f"{self.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman system service exited; see {self.log_path}")
            if self.socket.exists() and self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"podman system service did not answer in {timeout}s")

    def _earlier(self):
        """The pid of the service an earlier run started for this folder, if it still runs."""
        try:
            pid = int(self.pid_path.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = argv[1:3] == [b"system", b"service"] and self.url.encode() in argv
        return pid if ours and _alive(pid) else None

    def _end(self, pid, timeout=10):
        """SIGTERM the process ``pid``, SIGKILL after ``timeout`` s; waits until it is gone."""
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _answers(self):
        return PodmanEndpoint(self.url, timeout=2).ping()

    def stop(self, timeout=10):
        """Stop the service, started or reused (containers keep running under conmon)."""
        if self.process is not None and self.process.poll() is None:
            processes.stop(self.process, timeout)
        elif self.reused and self.pid is not None:
            self._end(self.pid, timeout)
        self.pid_path.unlink(missing_ok=True)


@contextmanager
def answering(url, folder):
    """The URL of a Podman service that answers for as long as the block runs: ``url`` when
    its service answers, else, when ``url`` is ``folder``'s own socket, a service started
    there for the while (and stopped after). Raises RuntimeError when none answers."""
    if PodmanEndpoint(url, timeout=2).ping():
        yield url
        return
    service = LocalPodmanService(folder)
    if service.url != url:
        raise RuntimeError(f"the Podman service at {url} does not answer")
    service.start()
    try:
        yield url
    finally:
        if not service.reused:
            service.stop()
