"""WebSockets through the notebook proxy: kernels, terminals, events.

The browser's WebSocket to ``/nb/<replica id>/…`` is bridged to the same path on the
replica's JupyterLab: first the proxy connects there (``Authorization: token …`` added,
the subprotocols the browser asked for offered), and only then does it accept the browser,
with the subprotocol JupyterLab chose; a refusal there (a kernel that does not exist: 404)
is the browser's answer too. Then one pump thread each way carries text and binary
messages as they are. Every ``CHECK_SECONDS`` the proxy asks whether the access session
still holds (signing out of the portal deletes it) and the replica still runs; when not,
both sides are closed (1008, "access ended").

A WebSocket holds a gunicorn thread for as long as it is open (``HOURGLASS_THREADS``).
"""

import socket
import threading
import time

from flask import Response
from simple_websocket import Client, ConnectionClosed, Server
from wsproto import ConnectionType

from portal.db import database

CHECK_SECONDS = 2.0
CONNECT_SECONDS = 10
MAX_MESSAGE = 64 * 1024 * 1024
RECEIVE_BYTES = 64 * 1024
PING_SECONDS = 25
ACCESS_ENDED = "access ended"
# Close codes a peer may not send in a close frame; they become a normal closure.
RESERVED_CODES = {1005, 1006, 1015}


class Upstream(Client):
    """simple-websocket's client to ``address`` (``IP:port``), with a connect and handshake
    timeout (its own has none) and the port in ``Host``; raises OSError or simple-websocket's
    ConnectionError (``status_code``: JupyterLab's refusal)."""

    def __init__(self, address, path, subprotocols=(), headers=()):
        host, _sep, port = address.rpartition(":")
        self.host, self.port, self.path = host.strip("[]"), int(port), path
        self.subprotocols = list(subprotocols)
        self.extra_headeers = list(headers)  # (sic) the attribute simple-websocket reads
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_SECONDS)
        try:
            super(Client, self).__init__(sock, connection_type=ConnectionType.CLIENT,
                                         receive_bytes=RECEIVE_BYTES,
                                         max_message_size=MAX_MESSAGE)
        except BaseException:
            sock.close()
            raise

    def handshake(self):
        self.host = f"{self.host}:{self.port}"
        super().handshake()
        self.sock.settimeout(None)


def requested_subprotocols(environ):
    value = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
    return [name.strip() for name in value.split(",") if name.strip()]


def accept(environ, subprotocol):
    """Complete the browser's handshake with ``subprotocol`` (or none)."""
    return Server(environ, subprotocols=[subprotocol] if subprotocol else None,
                  receive_bytes=RECEIVE_BYTES, ping_interval=PING_SECONDS,
                  max_message_size=MAX_MESSAGE)


class Done(Response):
    """What the view returns once the bridge ended: the socket was the server's all along
    (flask-sock's way of ending a WebSocket request under each server)."""

    def __init__(self, ws):
        super().__init__()
        self.ws = ws

    def __call__(self, environ, start_response):
        if self.ws.mode == "gunicorn":
            raise StopIteration()
        if self.ws.mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []


def _pump(source, sink, ended):
    """Messages from ``source`` to ``sink`` until either closes."""
    try:
        while True:
            message = source.receive()
            if message is not None:
                sink.send(message)
    except (ConnectionClosed, OSError):
        pass
    finally:
        ended.set()


def _close(ws, code, message):
    try:
        ws.close(code if code not in RESERVED_CODES else 1000, message)
    except (ConnectionClosed, OSError):
        pass


def bridge(browser, upstream, still_allowed, name="notebook-ws"):
    """Carry messages both ways until one side closes or ``still_allowed()`` (asked every
    ``CHECK_SECONDS`` with a database connection of its own) says no; then close both.
    Returns why it ended: "browser", "upstream" or ``ACCESS_ENDED``."""
    database.close()  # a socket may stay open for hours: hold no connection meanwhile
    ended = threading.Event()
    pump = threading.Thread(target=_pump, args=(upstream, browser, ended), daemon=True,
                            name=name)
    pump.start()
    why = "browser"
    next_check = time.monotonic() + CHECK_SECONDS
    try:
        while not ended.is_set():
            message = browser.receive(timeout=0.5)
            if message is not None:
                upstream.send(message)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_SECONDS
                with database.connection_context():
                    allowed = still_allowed()
                if not allowed:
                    why = ACCESS_ENDED
                    break
        else:
            why = "upstream"
    except (ConnectionClosed, OSError):
        why = "upstream" if ended.is_set() or not upstream.connected else "browser"
    if why == ACCESS_ENDED:
        _close(browser, 1008, ACCESS_ENDED)
    elif why == "upstream":
        _close(browser, upstream.close_reason, upstream.close_message)
    _close(browser, 1000, None)  # whatever else ended it
    _close(upstream, 1000, None)
    pump.join(5)
    return why
