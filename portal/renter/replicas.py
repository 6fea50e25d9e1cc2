"""A replica's log page and console page, for its renter only (another renter gets 404).

The log page shows the last ``LINES`` lines; while the replica runs its script
follows ``…/logs/stream``, Server-Sent Events of the lines after the ones shown
(``from``, then the ``Last-Event-ID`` the browser sends back when it
reconnects; each event's data is a JSON list of lines, so a ``\\r`` in a line
cannot break the stream). A stream holds a worker thread, so it ends after
``STREAM_SECONDS`` and the browser reconnects; each (re)connection reads the
log from its start to find its place. ``?download=1`` is the whole log as a
text/plain attachment. Lines show when they end with a newline.

The console page runs xterm.js over the WebSocket of ``portal.renter.console``.
"""

import json
import time
from collections import deque

from flask import Response, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from peewee import JOIN

from portal import security_headers, values
from portal.models import Node, Replica, Subtask, Task
from portal.renter.blueprint import bp

LINES = 1000
STREAM_SECONDS = 60


def replica_or_404(task_id, replica_id):
    """The caller's replica ``replica_id`` of their task ``task_id`` (a training task or a
    notebook's run, not deleted), with its subtask and node."""
    task = (Task.get_or_none(Task.id == task_id, Task.user == current_user,
                             Task.deleted == False)  # noqa: E712
            if 0 < task_id < 2**63 else None)
    if task is None:
        abort(404)
    replica = (Replica.select(Replica, Subtask, Node).join(Subtask)
               .switch(Replica).join(Node, JOIN.LEFT_OUTER)
               .where(Replica.id == replica_id, Replica.task == task).first()
               if 0 < replica_id < 2**63 else None)
    if replica is None:
        abort(404)
    replica.task = task
    return replica


def node_containers():
    """Logs and consoles on any node (``scheduler.console.Containers``, wired by app.py);
    its verbs raise its ``Error`` (``Gone`` for a container that does not exist)."""
    return current_app.extensions["hourglass.containers"]


def _last_lines(chunks, keep=LINES):
    """(the last ``keep`` whole lines of ``chunks``, how many whole lines, the unended rest)."""
    lines, count, rest = deque(maxlen=keep), 0, ""
    for chunk in chunks:
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        lines.extend(parts)
        count += len(parts)
    return list(lines), count, rest


# --- the log -------------------------------------------------------------------------------


@bp.get("/tasks/<int:task_id>/replicas/<int:replica_id>/logs")
def replica_logs(task_id, replica_id):
    replica = replica_or_404(task_id, replica_id)
    if request.args.get("download") and replica.container and replica.node:
        return _download(replica)
    live = replica.state == "running"
    lines, count, problem = [], 0, None
    if not replica.container or replica.node is None:
        problem = _("There is no log: the replica has not started.")
    else:
        containers = node_containers()
        try:
            # While it runs, read it all to count the lines the stream must skip.
            chunks = containers.logs(replica.node.url, replica.container,
                                     tail=None if live else LINES)
            lines, count, rest = _last_lines(chunks)
            if rest and not live:
                lines.append(rest)
        except containers.Gone:
            problem, live = _("The container is gone, and its log with it."), False
        except containers.Error as exc:
            problem, live = _("The node did not answer: %(reason)s", reason=exc), False
    return render_template("renter/replica_logs.html", replica=replica, task=replica.task,
                           lines=lines, count=count, live=live, problem=problem, limit=LINES)


def _download(replica):
    containers = node_containers()
    try:
        chunks = containers.logs(replica.node.url, replica.container)
    except containers.Error:  # the page says why
        return redirect(url_for("renter.replica_logs", task_id=replica.task_id,
                                replica_id=replica.id), 303)
    name = f"task-{replica.task_id}-{replica.subtask.role}-{replica.index}.log"
    return Response(chunks, mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff"})


@bp.get("/tasks/<int:task_id>/replicas/<int:replica_id>/logs/stream")
def replica_log_stream(task_id, replica_id):
    """Server-Sent Events: the lines after line ``from`` (or ``Last-Event-ID``); 204 (the
    browser stops asking) when there is nothing to follow."""
    replica = replica_or_404(task_id, replica_id)
    try:
        start = values.whole_number(
            request.headers.get("Last-Event-ID") or request.args.get("from", "0"), 0, 10**18)
    except values.ValueProblem:
        abort(400)
    if not replica.container or replica.node is None:
        return Response(status=204)
    containers = node_containers()
    try:
        stream = containers.logs(replica.node.url, replica.container, follow=True)
    except containers.Error:
        return Response(status=204)
    return Response(_events(stream, start, containers.Error),
                    mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _events(stream, start, error, seconds=STREAM_SECONDS):
    """The event stream; runs after the request has ended, so it touches no app state. A
    log that fails midway (``error``) ends the stream without ``end``: the browser asks
    again, and learns then whether there is still a log to follow."""
    deadline, seen, rest = time.monotonic() + seconds, 0, ""
    try:
        yield "retry: 1000\n\n"
        for chunk in stream:
            if not chunk:
                yield ": idle\n\n"  # also tells a closed connection
            else:
                parts = (rest + chunk).split("\n")
                rest = parts.pop()
                fresh = parts[max(0, start - seen):]
                seen += len(parts)
                if fresh:
                    yield f"id: {seen}\ndata: {json.dumps(fresh)}\n\n"
            if time.monotonic() > deadline:
                return  # the browser reconnects with Last-Event-ID
        if rest and seen >= start:
            yield f"id: {seen + 1}\ndata: {json.dumps([rest])}\n\n"
        yield "event: end\ndata: {}\n\n"
    except error:
        return
    finally:
        stream.close()


# --- the console ---------------------------------------------------------------------------


@bp.get("/tasks/<int:task_id>/replicas/<int:replica_id>/console")
def replica_console(task_id, replica_id):
    replica = replica_or_404(task_id, replica_id)
    # xterm.js styles the terminal with <style> elements and style attributes of its own.
    # Its links are never boosted, so this looser policy is only ever the console page's.
    security_headers.allow("style-src", "'unsafe-inline'")
    return render_template("renter/replica_console.html", replica=replica, task=replica.task,
                           running=replica.state == "running" and bool(replica.container))
