"""Replicas' logs and web consoles on any node, for the portal's pages.

``Containers`` is what ``app.py`` puts in ``app.extensions["hourglass.containers"]``:
the portal (which never imports ``scheduler``) reads and follows a replica's log
and opens a shell in it, naming the node by its URL and the container by its
handle (``Replica.node.url``, ``Replica.container``).

podman-py has no two-way exec stream (``exec_run(socket=True)`` is not
implemented), so the console and the followed log speak HTTP to the node's
Podman service over a connection of their own:

- console: ``POST /containers/{name}/exec`` (stdin, stdout, stderr, a TTY),
  then ``POST /exec/{id}/start`` with ``Connection: Upgrade`` / ``Upgrade: tcp``;
  Podman answers ``101 UPGRADED`` and the connection carries the terminal's raw
  bytes both ways. ``POST /exec/{id}/resize?h=&w=`` resizes it.
- followed log: ``GET /containers/{name}/logs?follow=true`` asked as HTTP/1.0,
  so the body is not chunked: Podman's 8-byte frame headers, each followed by
  that much output (replicas' containers have no TTY, so the log is framed).

Podman keeps an exec session's processes running when its connection closes,
so the console's command first prints its PID (``sh -c 'echo $$; exec "$0"
"$@"' ARGV...``: the argv is passed as arguments, never parsed by a shell) and
``Console.close`` sends that process SIGHUP, as closing a terminal window
does; the kernel then hangs up its foreground job too. Both need ``/bin/sh``
in the image.

These connections reach ``unix://`` and ``tcp://`` nodes directly, and an
``ssh://`` node through the local unix socket of its long-lived SSH tunnel
(``scheduler.ssh_tunnel``; a tunnel that died is started again on the next
connection), so consoles, resizes, hang-ups and logs work the same on all three.
"""

import codecs
import json
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from urllib.parse import quote, urlsplit

from scheduler.backend import BackendError, ContainerGone, NodeUnreachable
from scheduler.podman import PodmanBackend
from scheduler.ssh_tunnel import SCHEMES as SSH_SCHEMES
from scheduler.ssh_tunnel import TUNNELS, Tunnels

API = "/v4.0.0/libpod"  # served by Podman 4 and 5
FRAME = struct.Struct(">BxxxL")  # stream (1 stdout, 2 stderr), 3 zero bytes, size
HEAD_MAX = 64 * 1024
READ = 64 * 1024
TERM = "xterm-256color"
PID_WRAPPER = ("/bin/sh", "-c", 'echo "$$"; exec "$0" "$@"')


class Console:
    """A shell's terminal in a running container: bytes in, bytes out.

    ``recv`` blocks until output comes and returns b"" once the shell has ended
    or the console is closed; one thread may ``recv`` while another ``send``s;
    ``close`` may come from any thread and wakes a blocked ``recv``.
    """

    def __init__(self, url, exec_id, sock, pid, pending, timeout, tunnels):
        self.url = url
        self._tunnels = tunnels
        self.exec_id = exec_id
        self.pid = pid
        self._sock = sock
        self._pending = pending
        self._timeout = timeout
        self._closed = threading.Event()

    def send(self, data: bytes) -> None:
        """Type ``data``; dropped once the shell has ended (``recv`` tells that)."""
        try:
            self._sock.sendall(data)
        except OSError:
            pass

    def recv(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return self._sock.recv(READ)
        except OSError:
            return b""

    def resize(self, rows: int, cols: int) -> None:
        """Tell the terminal its new size, in character cells."""
        _call(self.url, "POST", f"/exec/{self.exec_id}/resize?h={int(rows)}&w={int(cols)}",
              timeout=self._timeout, tunnels=self._tunnels)

    def close(self) -> None:
        """End the connection, and hang up the shell if it still runs (blocks for two short
        API calls). Closing twice is harmless."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            session = _call(self.url, "GET", f"/exec/{self.exec_id}/json", timeout=self._timeout,
                            tunnels=self._tunnels)
            if session["Running"]:
                _hang_up(self.url, session["ContainerID"], self.pid, self._timeout,
                         self._tunnels)
        except BackendError:
            pass  # the container or its node is gone, and the shell with it


class Containers:
    """Logs and consoles of containers on any node, named by the node's URL.

    ``Error`` is the one exception its verbs raise, ``Gone`` the one for a
    container that does not exist, so a caller outside ``scheduler`` catches
    ``containers.Error`` without importing it. ``timeout`` bounds each API
    call, in seconds; a followed log yields "" after ``idle`` quiet seconds.
    ``tunnels`` reach ``ssh://`` nodes (default: the process's shared ones).
    """

    Error = BackendError
    Gone = ContainerGone

    def __init__(self, timeout=5.0, idle=10.0, tunnels: Tunnels | None = None):
        self.timeout = timeout
        self.idle = idle
        self.tunnels = tunnels or TUNNELS

    def logs(self, node_url: str, container: str, follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        """The container's output (stdout and stderr) as text chunks, the last ``tail`` lines
        (None: all). The container is looked up at once (Gone).

        With ``follow`` it goes on until the container stops, yielding "" after
        every ``idle`` seconds without output so the caller can keep its own
        connection alive or give up; closing the iterator ends the read at once.
        Podman (4.3 at least) sends the followed log's answer only with the
        container's first output, so the container is looked up by itself first,
        and the iterator waits for that answer as for output (a refusal then
        raises Error from the iterator).
        """
        if not follow:
            return PodmanBackend(node_url, self.timeout, tunnels=self.tunnels).logs(container,
                                                                                  tail=tail)
        name = quote(container, safe="")
        _call(node_url, "GET", f"/containers/{name}/json", handle=container,
              timeout=self.timeout, tunnels=self.tunnels)
        query = f"follow=true&stdout=true&stderr=true&tail={'all' if tail is None else int(tail)}"
        sock = _send(node_url, "GET", f"/containers/{name}/logs?{query}", timeout=self.timeout,
                     tunnels=self.tunnels)
        sock.settimeout(self.idle)
        return _followed_log(sock, container)

    def open_console(self, node_url: str, container: str, argv: Sequence[str], rows: int = 24,
                     cols: int = 80) -> Console:
        """Start ``argv`` (no shell parses it) on a new terminal of ``rows`` x ``cols`` in the
        running container, as the container's user, with TERM=xterm-256color.
        Raises Gone, or Error when the container does not run or the node
        cannot be reached."""
        created = _call(node_url, "POST", f"/containers/{quote(container, safe='')}/exec",
                        {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                         "Tty": True, "Cmd": [*PID_WRAPPER, *argv], "Env": [f"TERM={TERM}"]},
                        handle=container, timeout=self.timeout, tunnels=self.tunnels)
        exec_id = created["Id"]
        sock, status, rest = _request(node_url, "POST", f"/exec/{exec_id}/start",
                                      {"Detach": False, "Tty": True, "h": rows, "w": cols},
                                      upgrade=True, timeout=self.timeout, tunnels=self.tunnels)
        if status != 101:
            _raise(status, _read_to_end(sock, rest), container)
        try:
            while b"\n" not in rest:
                chunk = sock.recv(READ)
                if not chunk:
                    raise BackendError("the console's command ended at once")
                rest += chunk
        except OSError as error:
            sock.close()
            raise NodeUnreachable(str(error)) from error
        except BackendError:
            sock.close()
            raise
        first, rest = rest.split(b"\n", 1)
        if not first.strip().isdigit():
            sock.close()
            raise BackendError(f"the console needs /bin/sh in the image: {first[:200]!r}")
        sock.settimeout(None)
        return Console(node_url, exec_id, sock, int(first.strip()), rest, self.timeout,
                       self.tunnels)


def _hang_up(url, container_id, pid, timeout, tunnels):
    """SIGHUP to the console's process ``pid`` (a number Podman's shell printed, not one
    anybody typed), from a detached exec of its own."""
    killer = _call(url, "POST", f"/containers/{container_id}/exec",
                   {"Cmd": ["/bin/sh", "-c", 'kill -HUP "$1"', "sh", str(pid)]}, timeout=timeout,
                   tunnels=tunnels)
    _call(url, "POST", f"/exec/{killer['Id']}/start", {"Detach": True}, timeout=timeout,
          tunnels=tunnels)


def _connect(url, timeout, tunnels):
    """A new connection to the node's Podman socket; an ``ssh://`` node's goes through its
    tunnel, started again once if its socket refuses (the ssh process just died)."""
    parts = urlsplit(url)
    if parts.scheme not in ("unix", "tcp", *SSH_SCHEMES):
        raise BackendError(f"consoles and followed logs reach unix://, tcp:// and ssh:// "
                           f"nodes, not {parts.scheme}://")
    tries = 2 if parts.scheme in SSH_SCHEMES else 1
    for attempt in range(1, tries + 1):
        if parts.scheme in SSH_SCHEMES:
            address = tunnels.socket_for(url)
        else:
            address = parts.path if parts.scheme == "unix" else (parts.hostname, parts.port)
        sock = socket.socket(socket.AF_INET if parts.scheme == "tcp" else socket.AF_UNIX,
                             socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            if attempt == tries:
                raise NodeUnreachable(str(error)) from error


def _send(url, method, path, body=None, upgrade=False, timeout=5.0, tunnels=TUNNELS):
    """Send one request on a new connection; the socket, for the answer. HTTP/1.0 unless
    ``upgrade``, so the server closes the connection after an answer that is not chunked."""
    sock = _connect(url, timeout, tunnels)
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {API}{path} HTTP/{'1.1' if upgrade else '1.0'}", "Host: podman",
            "Content-Type: application/json", f"Content-Length: {len(data)}"]
    if upgrade:
        head += ["Connection: Upgrade", "Upgrade: tcp"]
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    except OSError as error:
        sock.close()
        raise NodeUnreachable(str(error)) from error
    return sock


def _head(buffer):
    """(status, the bytes past the head) of ``buffer``, which holds a whole answer head.
    Raises ValueError or IndexError for one that is no HTTP head."""
    return int(buffer.split(b" ", 2)[1]), buffer.split(b"\r\n\r\n", 1)[1]


def _read_head(sock):
    """Read the answer's head on ``sock``: (status, the bytes read past the head). Raises
    OSError, ValueError or IndexError."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(READ)
        if not chunk or len(buffer) > HEAD_MAX:
            raise OSError("the node closed the connection without an answer")
        buffer += chunk
    return _head(buffer)


def _request(url, method, path, body=None, upgrade=False, timeout=5.0, tunnels=TUNNELS):
    """Send one request on a new connection and read the answer's head: (socket, status,
    the bytes read past the head)."""
    sock = _send(url, method, path, body, upgrade, timeout, tunnels)
    try:
        status, rest = _read_head(sock)
    except (OSError, ValueError, IndexError) as error:
        sock.close()
        raise NodeUnreachable(str(error)) from error
    return sock, status, rest


def _read_to_end(sock, body):
    try:
        while chunk := sock.recv(READ):
            body += chunk
    except OSError:
        pass
    finally:
        sock.close()
    return body


def _call(url, method, path, body=None, handle=None, timeout=5.0, tunnels=TUNNELS):
    """One API call; its JSON answer (None when empty). A 404 is ContainerGone when
    ``handle`` names the container at stake; other refusals are BackendError."""
    sock, status, rest = _request(url, method, path, body, timeout=timeout, tunnels=tunnels)
    answer = _read_to_end(sock, rest)
    if status >= 400:
        _raise(status, answer, handle)
    return json.loads(answer) if answer.strip() else None


def _raise(status, answer, handle):
    if status == 404 and handle:
        raise ContainerGone(handle)
    try:
        message = json.loads(answer).get("message") or ""
    except (ValueError, AttributeError):
        message = answer.decode(errors="replace").strip()
    raise BackendError(message or f"Podman answered {status}")


def _followed_log(sock, container):
    """``_log_text`` of a followed log whose answer may not have come yet: "" each time
    ``idle`` passes before it comes (the container has printed nothing yet)."""
    try:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            try:
                chunk = sock.recv(READ)
            except TimeoutError:
                yield ""
                continue
            except OSError as error:
                raise NodeUnreachable(str(error)) from error
            if not chunk or len(buffer) > HEAD_MAX:
                raise NodeUnreachable("the node closed the connection without an answer")
            buffer += chunk
        try:
            status, rest = _head(buffer)
        except (ValueError, IndexError) as error:
            raise NodeUnreachable(str(error)) from error
        if status >= 400:
            _raise(status, _read_to_end(sock, rest), container)
        yield from _log_text(sock, rest)
    finally:
        sock.close()


def _log_text(sock, buffer):
    """Text chunks from Podman's framed log stream on ``sock``; "" when a read times out."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while True:
            pieces, at = [], 0
            while len(buffer) - at >= FRAME.size:
                _stream, size = FRAME.unpack_from(buffer, at)
                if len(buffer) - at - FRAME.size < size:
                    break
                pieces.append(decoder.decode(buffer[at + FRAME.size:at + FRAME.size + size]))
                at += FRAME.size + size
            buffer = buffer[at:]
            if text := "".join(pieces):
                yield text
            try:
                chunk = sock.recv(READ)
            except TimeoutError:
                yield ""
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
        if rest := decoder.decode(b"", final=True):
            yield rest
    finally:
        sock.close()
