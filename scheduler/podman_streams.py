"""The two streams to a node's Podman that podman-py cannot carry, on connections of their own.

- a console's terminal: ``POST /exec/{id}/start`` with ``Connection: Upgrade`` /
  ``Upgrade: tcp``; Podman answers ``101 UPGRADED`` and the connection carries the
  terminal's raw bytes both ways.
- a followed log: ``GET /containers/{name}/logs?follow=true`` asked as HTTP/1.0,
  so the body is not chunked: Podman's 8-byte frame headers, each followed by
  that much output (replicas' containers have no TTY, so the log is framed).

These connections reach ``unix://`` and ``tcp://`` nodes directly, and an
``ssh://`` node through the local unix socket of its long-lived SSH tunnel
(``scheduler.ssh_tunnel``; a tunnel that died is started again on the next
connection). Podman's refusals are the backend seam's exceptions.
"""

import codecs
import json
import socket
import struct
from urllib.parse import quote, urlsplit

from scheduler.backend import BackendError, ContainerGone, NodeUnreachable
from scheduler.ssh_tunnel import SCHEMES as SSH_SCHEMES

API = "/v4.0.0/libpod"  # served by Podman 4 and 5
FRAME = struct.Struct(">BxxxL")  # stream (1 stdout, 2 stderr), 3 zero bytes, size
HEAD_MAX = 64 * 1024
READ = 64 * 1024


def start_terminal(node, exec_id, container, rows, cols):
    """Start the exec session ``exec_id`` (made with a TTY in ``container``) on a terminal of
    ``rows`` x ``cols``: (the upgraded socket, the bytes already read from it). Raises
    ContainerGone, BackendError or NodeUnreachable."""
    sock, status, rest = _request(node, "POST", f"/exec/{exec_id}/start",
                                  {"Detach": False, "Tty": True, "h": rows, "w": cols},
                                  upgrade=True)
    if status != 101:
        _raise(status, _read_to_end(sock, rest), container)
    return sock, rest


def follow_log(node, container, tail, idle):
    """``container``'s output as text chunks, the last ``tail`` lines (None: all) and on
    until it stops; "" after every ``idle`` seconds without output (and while its answer
    has not come). Closing the iterator ends the read at once."""
    query = f"follow=true&stdout=true&stderr=true&tail={'all' if tail is None else int(tail)}"
    sock = _send(node, "GET", f"/containers/{quote(container, safe='')}/logs?{query}")
    sock.settimeout(idle)
    return _followed_log(sock, container)


# podman-py carries neither a two-way exec stream (``exec_run(socket=True)`` is not
# implemented) nor a followed read that yields every ``idle`` quiet seconds, so these two
# streams alone speak HTTP to the node's Podman on a connection of their own, made here.
def _connect(node):
    """A new connection to the Podman socket of ``node`` (a PodmanEndpoint); an ``ssh://``
    node's goes through its tunnel, started again once if its socket refuses (the ssh
    process just died)."""
    parts = urlsplit(node.url)
    if parts.scheme not in ("unix", "tcp", *SSH_SCHEMES):
        raise BackendError(f"consoles and followed logs reach unix://, tcp:// and ssh:// "
                           f"nodes, not {parts.scheme}://")
    tries = 2 if parts.scheme in SSH_SCHEMES else 1
    for attempt in range(1, tries + 1):
        if parts.scheme in SSH_SCHEMES:
            address = node.tunnels.socket_for(node.url, node.identity)
        else:
            address = parts.path if parts.scheme == "unix" else (parts.hostname, parts.port)
        sock = socket.socket(socket.AF_INET if parts.scheme == "tcp" else socket.AF_UNIX,
                             socket.SOCK_STREAM)
        sock.settimeout(node.timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            if attempt == tries:
                raise NodeUnreachable(str(error)) from error


def _send(node, method, path, body=None, upgrade=False):
    """Send one request on a new connection; the socket, for the answer. HTTP/1.0 unless
    ``upgrade``, so the server closes the connection after an answer that is not chunked."""
    sock = _connect(node)
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


def _request(node, method, path, body=None, upgrade=False):
    """Send one request on a new connection and read the answer's head: (socket, status,
    the bytes read past the head)."""
    sock = _send(node, method, path, body, upgrade)
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
