"""A fault proxy: a small HTTP proxy on a unix socket in front of a real Podman API socket.

Hourglass talks to the proxy as to any node (``unix://<its socket>``); every
request reaches the real Podman service behind it unless a rule says
otherwise. A rule matches a method and a path (a regular expression searched
in the request's path and query) and can:

- ``delay``: wait ``seconds`` before forwarding the request;
- ``delay_answer``: forward at once (Podman does the work) but hold the answer
  ``seconds`` (the client times out on a call that happened);
- ``error``: answer ``status`` (500) with a libpod-style JSON error;
- ``drop``: close the connection without answering (a reset);
- ``hang``: never answer while the rule stands.

``down()`` stops listening (connections are refused) and ``up()`` listens
again. Each request is read whole (headers, and a body by Content-Length or
chunked), sent upstream on a new connection with ``Connection: close``, and
the answer streamed back until Podman closes it, so streamed answers (events,
followed logs) pass through and every request is judged on its own.
``requests`` lists what came in, as ``(method, path)``.
"""

import json
import os
import re
import select
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass


@dataclass
class Rule:
    action: str
    pattern: re.Pattern
    method: str | None = None
    seconds: float = 0.0
    status: int = 500
    times: int | None = None  # None: for as long as the rule stands

    def matches(self, method, path):
        return (self.method is None or self.method == method) and self.pattern.search(path)


class FaultProxy:
    """Listens at ``self.url`` (a short path: podman-py puts it in a host name) and forwards to
    the unix socket ``upstream``. Use as a context manager, or call ``close()``."""

    def __init__(self, upstream):
        self.upstream = str(upstream)
        self.folder = tempfile.mkdtemp(prefix="hgf", dir="/tmp")
        self.path = os.path.join(self.folder, "p.sock")
        self.url = f"unix://{self.path}"
        self.requests = []
        self._rules = []
        self._lock = threading.Lock()
        self._released = threading.Event()  # set: hanging requests give up
        self._listener = None
        self._closed = False
        self.up()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- rules ---------------------------------------------------------------------------

    def fault(self, action, pattern=".", method=None, seconds=0.0, status=500, times=None):
        """Add a rule (see the module docstring); the newest matching rule wins."""
        rule = Rule(action, re.compile(pattern), method, seconds, status, times)
        with self._lock:
            self._rules.insert(0, rule)
        if action == "hang":
            self._released.clear()
        return rule

    def clear(self):
        """Remove every rule; requests hanging so far are dropped."""
        with self._lock:
            self._rules.clear()
        self._released.set()

    def down(self):
        """Stop listening: new connections are refused."""
        if self._listener is not None:
            try:  # wakes the accepting thread and stops listening at once (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None

    def up(self):
        """Listen (again) on the proxy's socket."""
        if self._listener is not None:
            return
        if os.path.exists(self.path):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name="fault-proxy").start()

    def close(self):
        self._closed = True
        self.clear()
        self.down()
        shutil.rmtree(self.folder, ignore_errors=True)

    def count(self, pattern, method=None):
        """How many requests so far matched ``pattern`` (and ``method``)."""
        found = re.compile(pattern)
        with self._lock:
            return sum(1 for m, p in self.requests
                       if found.search(p) and (method is None or m == method))

    def _rule_for(self, method, path):
        with self._lock:
            self.requests.append((method, path))
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    # --- serving -------------------------------------------------------------------------

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            head, body = _read_request(client)
            if head is None:
                return
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            rule = self._rule_for(method, target)
            action = rule.action if rule else "forward"
            if action == "hang":
                self._released.wait()
                return
            if action == "drop":
                return
            if action == "error":
                client.sendall(_error(rule.status))
                return
            if action == "delay":
                time.sleep(rule.seconds)
            self._forward(client, _close_after(head) + body,
                          rule.seconds if action == "delay_answer" else 0.0)
        except OSError:
            pass
        finally:
            client.close()

    def _forward(self, client, request, hold):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
            upstream.sendall(request)
            if hold:
                time.sleep(hold)
            while True:
                ready, _, _ = select.select([upstream, client], [], [], 1.0)
                if client in ready and not client.recv(65536, socket.MSG_PEEK):
                    return  # the client hung up (a stream it no longer reads)
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                if self._closed:
                    return
        finally:
            upstream.close()


def _read_request(sock):
    """(head bytes, body bytes) of one HTTP request; (None, b"") when the client hung up."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return head + b"\r\n\r\n", body


def _close_after(head):
    """The request head with ``Connection: close``, so Podman ends the answer by closing."""
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n")
             if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _error(status):
    body = json.dumps({"cause": "fault injected", "message": "fault injected by the test",
                       "response": status}).encode()
    return (f"HTTP/1.1 {status} Fault\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
