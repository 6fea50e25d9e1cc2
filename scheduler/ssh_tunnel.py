"""Long-lived SSH tunnels to the Podman sockets of ``ssh://`` nodes.

``Tunnels.socket_for(url)`` gives a local unix socket that reaches the
remote Podman socket named by ``url`` (``ssh://user@host:port/run/podman/podman.sock``):
one ``ssh -N -L LOCAL.sock:REMOTE.sock`` process per URL, started on first use,
started again when it has died, and ended at exit. The local sockets live in
a private folder of this process (mode 0700). ssh runs from an argv list,
never through a shell, with ``--`` before the destination; the URL's parts
are checked first, so nothing in a node's URL becomes an ssh option.

ssh runs with ``BatchMode=yes`` (no prompt ever waits), ``ExitOnForwardFailure``
(no process without its socket), ``ServerAliveInterval`` (a dead link ends
it, and the next use starts a new one) and ``StrictHostKeyChecking=accept-new``
(a host's first key is remembered, a changed one refused). The identity
file is the one a caller last passed for the URL (node discovery passes the one its
``podman system connection`` entry names, as ``PodmanEndpoint``'s ``identity``), else
the one that entry names when nobody passed one in this process, else ssh's own
defaults.

Every call to an ``ssh://`` node goes through these tunnels, podman-py's
(``PodmanEndpoint``) included: podman-py's own SSH transport (one ssh process per
connection) overrides its socket's ``recv`` to read the ssh process's stdout, and
urllib3-future (which grafana-client's niquests installs in urllib3's place) reads
through ``recv``, so every answer comes back empty.
"""

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from scheduler.backend import BackendError, NodeUnreachable
from scheduler.connections import identity_for

SCHEMES = ("ssh", "http+ssh")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*|[0-9A-Fa-f:.]+")
REMOTE = re.compile(r"/[A-Za-z0-9._/@+-]*")
OPTIONS = ("BatchMode=yes", "ExitOnForwardFailure=yes", "ServerAliveInterval=15",
           "ServerAliveCountMax=3", "ConnectTimeout=10", "StrictHostKeyChecking=accept-new",
           "StreamLocalBindUnlink=yes", "LogLevel=ERROR")
LOG_TAIL = 2000


def ssh_argv(url: str, local: str, identity: str | None = None,
             options: Sequence[str] = ()) -> list[str]:
    """The ssh command that forwards unix socket ``local`` to ``url``'s remote socket.

    Raises BackendError for a URL that is not ``ssh://[user@]host[:port]/absolute/path``
    or whose parts hold anything but plain name characters."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise BackendError(f"bad port in {url!r}") from error
    if parts.scheme not in SCHEMES:
        raise BackendError(f"not an ssh:// URL: {url!r}")
    host, user, path = parts.hostname or "", parts.username, parts.path
    if not HOST.fullmatch(host):
        raise BackendError(f"bad host in {url!r}")
    if user is not None and not NAME.fullmatch(user):
        raise BackendError(f"bad user in {url!r}")
    if parts.password is not None or parts.query or parts.fragment:
        raise BackendError(f"an ssh:// node's URL takes no password, query or fragment: {url!r}")
    if not REMOTE.fullmatch(path) or path == "/":
        raise BackendError(f"an ssh:// node's URL ends with its Podman socket's path: {url!r}")
    argv = ["ssh", "-N", "-T"]
    for option in (*OPTIONS, *options):
        argv += ["-o", option]
    if identity:
        argv += ["-i", str(Path(identity).expanduser()), "-o", "IdentitiesOnly=yes"]
    if port is not None:
        argv += ["-p", str(port)]
    if user is not None:
        argv += ["-l", user]
    return [*argv, "-L", f"{local}:{path}", "--", host]


@dataclass
class _Tunnel:
    """One ssh process and its local socket (``local``, its messages in the file ``log``);
    its lock serialises (re)starts. ``identity`` is the key file a caller last passed for
    its URL (None: none yet)."""

    url: str
    local: str
    log: str
    identity: str | None = None
    process: subprocess.Popen | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alive(self):
        return self.process is not None and self.process.poll() is None \
            and os.path.exists(self.local)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class Tunnels:
    """One long-lived tunnel per ``ssh://`` URL, for this process.

    ``options``: more ``-o`` options for ssh (after the defaults, so ssh keeps
    the defaults' values when both name one option). ``identities``: the
    identity file for a URL no caller passed one for, or None (default: the one its
    ``podman system connection`` entry names).
    ``start_timeout``: seconds a new tunnel may take to open its socket.
    """

    def __init__(self, options: Sequence[str] = (),
                 identities: Callable[[str], str | None] = identity_for,
                 start_timeout: float = 20.0):
        self.options = tuple(options)
        self.identities = identities
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        self._pid = os.getpid()  # a forked child starts over: its parent owns those processes
        self._folder = None
        self._tunnels = {}

    def socket_for(self, url: str, identity: str | None = None) -> str:
        """The path of a local unix socket that reaches ``url``'s Podman socket; starts (or
        starts again) its tunnel if needed. Its key file is ``identity``, kept for later
        starts; None: the one passed before, else ``identities``. Raises NodeUnreachable
        when ssh fails, and BackendError for a URL that is not a plain ``ssh://`` one."""
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            tunnel = self._tunnels.get(url)
            if tunnel is None:
                ssh_argv(url, "/")  # check the URL before keeping anything for it
                if self._folder is None:
                    # mode 0700; a short path, as podman-py puts it in a host name (63 chars)
                    self._folder = tempfile.mkdtemp(prefix="hg-ssh-")
                number = len(self._tunnels)
                tunnel = _Tunnel(url, os.path.join(self._folder, f"{number}.sock"),
                                 os.path.join(self._folder, f"{number}.log"))
                self._tunnels[url] = tunnel
        with tunnel.lock:
            if identity:
                tunnel.identity = identity
            if not tunnel.alive():
                self._start(tunnel)
        return tunnel.local

    def pid(self, url: str) -> int | None:
        """The process id of ``url``'s ssh, while it runs; None otherwise."""
        tunnel = self._tunnels.get(url)
        return tunnel.process.pid if tunnel and tunnel.alive() else None

    def close(self) -> None:
        """End every tunnel and remove the private folder; the next use starts over."""
        with self._lock:
            if self._pid != os.getpid():
                return self._reset()
            for tunnel in self._tunnels.values():
                with tunnel.lock:
                    tunnel.stop()
            if self._folder:
                shutil.rmtree(self._folder, ignore_errors=True)
            self._reset()

    def _start(self, tunnel):
        tunnel.stop()
        if os.path.lexists(tunnel.local):
            os.unlink(tunnel.local)
        identity = tunnel.identity or self.identities(tunnel.url)
        argv = ssh_argv(tunnel.url, tunnel.local, identity, self.options)
        try:
            with open(tunnel.log, "wb") as log:
                tunnel.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL, stderr=log)
        except OSError as error:
            raise NodeUnreachable(f"cannot run ssh: {error}") from error
        deadline = time.monotonic() + self.start_timeout
        while not _accepts(tunnel.local):
            if tunnel.process.poll() is not None:
                status = tunnel.process.returncode
                tunnel.process = None
                raise NodeUnreachable(f"ssh to {_host(tunnel.url)} ended ({status}): "
                                      f"{_tail(tunnel.log)}")
            if time.monotonic() > deadline:
                tunnel.stop()
                raise NodeUnreachable(f"ssh to {_host(tunnel.url)} opened no tunnel within "
                                      f"{self.start_timeout:g} s: {_tail(tunnel.log)}")
            time.sleep(0.05)


def _accepts(path):
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _host(url):
    return urlsplit(url).hostname or url


def _tail(path):
    try:
        text = Path(path).read_bytes()[-LOG_TAIL:].decode(errors="replace").strip()
    except OSError:
        return ""
    return text or "no message"


TUNNELS = Tunnels()  # the process's own, shared by every backend and console unless told otherwise
atexit.register(TUNNELS.close)
