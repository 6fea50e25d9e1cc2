"""The web console's WebSocket: xterm.js in the browser bridged to a shell in a replica.

``…/console/ws`` runs ``/bin/sh`` on a new terminal in the running container
(``Containers.open_console``), one pump thread each way. The protocol:

- binary messages carry terminal bytes, both ways: what is typed, what the
  shell prints;
- a text message from the browser is a JSON control message; the one there is
  ``{"resize": [rows, cols]}``; others are ignored. ``?rows=&cols=`` on the URL
  gives the first size;
- the portal closes with 1000 and a short reason the page prints (the shell
  ended, the replica stopped, you signed out), or 1011 when the shell could
  not start.

The handshake (a GET, so no CSRF token) is refused before it completes: 401
without a session, 403 when ``Origin`` is not this site (cross-site WebSocket
hijacking, also from the notebooks' origin on another port), 404 for someone
else's replica, 409 unless it runs. An open console closes within
``CHECK_SECONDS`` when its user is disabled or their password reset (the
``session_nonce`` changes) or the replica stops, and at once when they sign
out in this process; the browser is pinged, so a vanished one is noticed.
"""

import json
import threading
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

from flask import abort, current_app, g, request
from flask_babel import gettext as _
from flask_login import current_user, user_logged_out
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from portal import values
from portal.db import database
from portal.models import Replica, Task, User
from portal.renter.blueprint import bp
from portal.renter.replicas import node_containers, replica_or_404

CHECK_SECONDS = 2.0
SHELL = ["/bin/sh"]
sock = Sock()
_open_consoles = {}  # user id -> {threading.Event}: set on sign-out, in this process
_open_lock = threading.Lock()


def _check_console_handshake():
    """Refusals before the console's WebSocket handshake completes. Runs ahead of the
    area's role check, which would send an anonymous visitor to the login page."""
    if request.endpoint != "renter.console_socket":
        return None
    if not current_user.is_authenticated:
        abort(401)
    if current_user.role != "renter":
        return None  # the role check answers 403
    origin = urlsplit(request.headers.get("Origin", ""))
    if origin.scheme not in ("http", "https") or origin.netloc.lower() != request.host.lower():
        abort(403)
    replica = replica_or_404(**request.view_args)
    if replica.state != "running" or not replica.container or replica.node is None:
        abort(409)
    g.console = SimpleNamespace(url=replica.node.url, container=replica.container,
                                replica=replica.id, user=current_user.id,
                                nonce=current_user.session_nonce)
    return None


bp.before_request_funcs.setdefault(None, []).insert(0, _check_console_handshake)


@bp.record_once
def _socket_options(state):
    # Ping the browser (a vanished one is noticed within a minute); refuse input over 1 MiB.
    state.app.config.setdefault("SOCK_SERVER_OPTIONS",
                                {"ping_interval": 25, "max_message_size": 1 << 20})


@sock.route("/tasks/<int:task_id>/replicas/<int:replica_id>/console/ws", bp=bp)
def console_socket(ws, task_id, replica_id):
    target, containers = g.console, node_containers()
    reasons = {"ended": _("The shell ended."), "stopped": _("The replica is not running."),
               "signed out": _("You signed out."), "failed": _("The console could not start.")}
    database.close()  # a console may stay open for hours: hold no connection meanwhile
    try:
        console = containers.open_console(target.url, target.container, SHELL,
                                          *_size(request.args))
    except containers.Error as exc:
        current_app.logger.warning("console of replica %s: %s", target.replica, exc)
        ws.close(1011, reasons["failed"])
        return
    ended, signed_out = threading.Event(), threading.Event()
    with _open_lock:
        _open_consoles.setdefault(target.user, set()).add(signed_out)
    pump = threading.Thread(target=_pump_out, args=(console, ws, ended), daemon=True,
                            name=f"console-r{target.replica}")
    pump.start()
    try:
        reason = _bridge_in(ws, console, containers, target, ended, signed_out)
        ws.close(1000, reasons[reason])
    finally:
        with _open_lock:
            _open_consoles[target.user].discard(signed_out)
        console.close()
        pump.join(5)


def _size(args):
    """(rows, cols) from the query string, within 1..1000; 24 x 80 when absent or odd."""
    def number(name, default):
        try:
            return values.whole_number(args.get(name), 1, 1000)
        except values.ValueProblem:
            return default
    return number("rows", 24), number("cols", 80)


def _pump_out(console, ws, ended):
    """Container to browser, in a thread of its own, until the shell ends or is closed."""
    try:
        while data := console.recv():
            ws.send(data)
    except (ConnectionClosed, OSError):
        pass
    finally:
        ended.set()


def _bridge_in(ws, console, containers, target, ended, signed_out):
    """Browser to container until something ends the console; why it ended. Raises
    ConnectionClosed when the browser goes."""
    next_check = time.monotonic() + CHECK_SECONDS
    while True:
        message = ws.receive(timeout=0.25)
        if isinstance(message, bytes):
            console.send(message)
        elif message is not None:
            _control(console, containers, message)
        if signed_out.is_set():
            return "signed out"
        if ended.is_set():
            return _still_allowed(target) or "ended"
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + CHECK_SECONDS
            if reason := _still_allowed(target):
                return reason


def _control(console, containers, message):
    try:
        rows, cols = json.loads(message)["resize"]
    except (ValueError, KeyError, TypeError):
        return
    if all(isinstance(n, int) and 0 < n <= 1000 for n in (rows, cols)):
        try:
            console.resize(rows, cols)
        except containers.Error:
            pass  # the shell has just ended; the pump tells


def _still_allowed(target):
    """None while the session's user may keep the console, else why not."""
    with database.connection_context():
        user = User.get_or_none(User.id == target.user)
        if user is None or not user.active or user.session_nonce != target.nonce:
            return "signed out"
        running = (Replica.select().join(Task)
                   .where(Replica.id == target.replica, Replica.state == "running",
                          Task.deleted == False).exists())  # noqa: E712
    return None if running else "stopped"


def _on_sign_out(sender, user=None, **extra):
    """Flask-Login's ``user_logged_out``: close that user's consoles in this process."""
    with _open_lock:
        for event in _open_consoles.get(getattr(user, "id", None), ()):
            event.set()


user_logged_out.connect(_on_sign_out)
