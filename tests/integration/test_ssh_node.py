"""Consoles and followed logs on a node reached by ``ssh://``, for real.

A real OpenSSH server (``/usr/sbin/sshd``, its own host key and config, on a
free port of 127.0.0.1) lets in a key made for the test; the node's URL
points, through it, at the session's real Podman socket. Everything the
portal does on a node (console, resize, hang-up, followed log, inspect) then
runs over that SSH tunnel against real busybox containers.
"""

import os
import pwd
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from scheduler.backend import BackendError, NodeUnreachable
from scheduler.console import Containers
from scheduler.podman import PodmanBackend
from scheduler.ssh_tunnel import Tunnels, ssh_argv
from tests.conftest import free_port
from tests.support import wait_for

pytestmark = pytest.mark.podman

SSHD = "/usr/sbin/sshd"
# Not TEST_LABEL: Podman's storage is shared, and another test session's end removes every
# container with that label, mid-test here. These ones are removed by their fixture, and
# their commands end within 10 minutes if a run is killed.
OWN_LABEL = "hourglass.test-ssh-node"
# Prints a line, waits for /dev/shm/go to exist, prints two more, then sleeps.
GATED = ["sh", "-c", 'echo first-line; i=0; while [ ! -e /dev/shm/go ] && [ "$i" -lt 3000 ]; '
         'do sleep 0.1; i=$((i+1)); done; echo second-line; sleep 0.3; echo third-line; '
         "exec sleep 300"]


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hourglass-test",
                    "-f", str(path)], check=True, capture_output=True)
    return path


class SSHServer:
    """``sshd -D`` on 127.0.0.1:``port``, letting in ``key`` for the current user."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.key = keygen(folder / "client_key")
        host_key = keygen(folder / "host_key")
        authorized = folder / "authorized_keys"
        authorized.write_text((folder / "client_key.pub").read_text())
        authorized.chmod(0o600)
        self.config = folder / "sshd_config"
        self.config.write_text(
            f"ListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n"
            "AllowStreamLocalForwarding yes\nLogLevel VERBOSE\n")
        self.log = folder / "sshd.log"
        self.process = None

    def start(self):
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config), "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(self._listens, timeout=10, what=f"sshd on port {self.port}")
        return self

    def _listens(self):
        assert self.process.poll() is None, f"sshd exited:\n{self.log.read_text()}"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def url(self, remote):
        return f"ssh://{self.user}@127.0.0.1:{self.port}{remote}"

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    assert os.path.exists(SSHD), "openssh-server is missing: make test installs it"
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def node(sshd, podman_service, tmp_path):
    """The session's Podman socket as an ``ssh://`` node, and tunnels that trust the test's
    key and server; every tunnel is closed at the end."""
    url = sshd.url(str(podman_service.socket))
    tunnels = Tunnels(options=[f"UserKnownHostsFile={tmp_path / 'known_hosts'}"],
                      identities={url: str(sshd.key)}.get)
    yield url, tunnels
    tunnels.close()


@pytest.fixture
def containers(node):
    url, tunnels = node
    return Containers(timeout=5, idle=0.5, tunnels=tunnels)


@pytest.fixture
def run_container(podman_service, test_image):
    """Start a busybox container running ``argv`` (on the local socket); its name.
    Removed at the end."""
    backend = PodmanBackend(podman_service.url)
    started = []

    def run(argv):
        with backend.client() as client:
            container = client.containers.create(test_image, argv, labels={OWN_LABEL: "1"})
            container.start()
        started.append(container.name)
        return container.name

    yield run
    for name in started:
        backend.remove(name)


class Reader:
    """What a console prints, read by a thread of its own so a test never blocks on it."""

    def __init__(self, console):
        self.chunks = queue.Queue()
        self.seen = b""
        threading.Thread(target=self._pump, args=(console,), daemon=True).start()

    def _pump(self, console):
        while data := console.recv():
            self.chunks.put(data)
        self.chunks.put(b"")

    def until(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.seen!r}"
            try:
                data = self.chunks.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            assert data, f"the console ended before {text!r}: {self.seen!r}"
            self.seen += data
        return self.seen.decode(errors="replace")


def processes(podman_service, container):
    return PodmanBackend(podman_service.url).exec(
        container, ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).stdout


def test_console_over_ssh_runs_a_shell_resizes_and_hangs_it_up(node, containers, run_container,
                                                                podman_service):
    url, tunnels = node
    name = run_container(["sleep", "600"])
    console = containers.open_console(url, name, ["/bin/sh"], rows=30, cols=100)
    reader = Reader(console)
    console.send(b"echo hello; echo sum-$((6*7)); stty size\n")
    out = reader.until("30 100")
    assert "hello\r\n" in out and "sum-42\r\n30 100" in out
    console.resize(40, 120)
    console.send(b"stty size; sleep 4321\n")
    reader.until("40 120")
    assert "sleep 4321" in processes(podman_service, name)
    assert tunnels.pid(url) is not None  # all of it went through the one tunnel
    console.close()
    wait_for(lambda: "sleep 4321" not in processes(podman_service, name), timeout=10,
             what="the console's shell and its job to be hung up")


def test_followed_log_over_ssh_sees_lines_as_they_come(node, containers, run_container,
                                                       podman_service):
    url, _tunnels = node
    name = run_container(GATED)
    wait_for(lambda: "first-line" in "".join(containers.logs(url, name)),
             what="the first line, read without following over ssh")
    chunks = containers.logs(url, name, follow=True)
    text = ""
    while "first-line" not in text:
        text += next(chunks)
    assert "second-line" not in text
    assert next(chunks) == ""  # quiet: the idle tick, the log is still open
    assert PodmanBackend(podman_service.url).exec(
        name, ["sh", "-c", "echo > /dev/shm/go"]).exit_code == 0
    deadline = time.monotonic() + 10
    while "third-line" not in text:
        assert time.monotonic() < deadline, f"no new lines followed: {text!r}"
        text += next(chunks)
    assert text.splitlines() == ["first-line", "second-line", "third-line"]
    chunks.close()
    with pytest.raises(Containers.Gone):
        containers.logs(url, "hourglass-no-such-container", follow=True)


def test_backend_inspects_a_container_over_ssh(sshd, podman_service, run_container, tmp_path):
    """PodmanBackend (podman-py) reaches the node through a tunnel too, with its own
    ``identity``: the tunnels here know no key of their own."""
    name = run_container(["sh", "-c", "echo from-busybox; exec sleep 600"])
    url = sshd.url(str(podman_service.socket))
    tunnels = Tunnels(options=[f"UserKnownHostsFile={tmp_path / 'known_hosts'}"],
                      identities=lambda url: None)
    try:
        backend = PodmanBackend(url, timeout=10, identity=str(sshd.key), tunnels=tunnels)
        state = backend.inspect(name)
        assert state is not None and state.handle == name and state.status == "running"
        assert backend.inspect("hourglass-no-such-container") is None
        assert backend.version() and tunnels.pid(url) is not None
        wait_for(lambda: "from-busybox" in "".join(backend.logs(name)), what="the log")
    finally:
        tunnels.close()


def test_a_killed_tunnel_is_started_again(node, containers, run_container):
    url, tunnels = node
    name = run_container(["sleep", "600"])
    folder = os.path.dirname(tunnels.socket_for(url))
    assert os.stat(folder).st_mode & 0o777 == 0o700
    first = tunnels.pid(url)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: tunnels.pid(url) is None, what="the killed ssh to be seen dead")
    console = containers.open_console(url, name, ["/bin/sh"])
    reader = Reader(console)
    console.send(b"echo again-$((2+3))\n")
    reader.until("again-5")
    console.close()
    second = tunnels.pid(url)
    assert second is not None and second != first
    tunnels.close()
    assert tunnels.pid(url) is None and not os.path.exists(folder)
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_bad_ssh_urls_never_reach_ssh_and_unreachable_nodes_say_why(sshd, node, tmp_path,
                                                                    containers, podman_service):
    _url, tunnels = node
    marker = tmp_path / "pwned"
    sock = podman_service.socket
    for bad in (f"ssh://-oProxyCommand=touch%20{marker}/run/podman.sock",
                f"ssh://root@-oProxyCommand=touch {marker}{sock}",
                f"ssh://-oProxyCommand=x@127.0.0.1:{sshd.port}{sock}",
                f"ssh://root@127.0.0.1:{sshd.port}/run/a:b.sock",
                f"ssh://root@127.0.0.1:{sshd.port}/run/podman.sock;touch {marker}",
                f"ssh://root@127.0.0.1:{sshd.port}",
                f"ssh://root:secret@127.0.0.1:{sshd.port}{sock}"):
        with pytest.raises(BackendError) as refused:
            containers.open_console(bad, "anything", ["/bin/sh"])
        assert not isinstance(refused.value, NodeUnreachable), bad
        with pytest.raises(BackendError):
            containers.logs(bad, "anything", follow=True)
    assert not marker.exists()
    argv = ssh_argv(sshd.url("/run/podman/podman.sock"), "/tmp/x.sock", "/k")
    assert argv[-2:] == ["--", "127.0.0.1"] and "-L" in argv and "BatchMode=yes" in argv

    closed = free_port()  # nothing listens there
    with pytest.raises(NodeUnreachable, match="ssh to 127.0.0.1 ended"):
        containers.open_console(f"ssh://root@127.0.0.1:{closed}{sock}", "anything", ["/bin/sh"])
    stranger = Tunnels(options=[f"UserKnownHostsFile={tmp_path / 'known_hosts'}"],
                       identities=lambda url: str(keygen(tmp_path / "other_key")))
    try:
        with pytest.raises(NodeUnreachable, match="Permission denied"):
            Containers(tunnels=stranger).logs(sshd.url(str(sock)), "anything", follow=True)
    finally:
        stranger.close()
