"""``GET /healthz``: is the database, Podman and the scheduler each working.

Cheap by design: Podman is never asked per request. Its part is the last look
of ``hourglass.engine`` (an ``EngineStatus``: at most one ``version()`` call
per ``HOURGLASS_HEALTH_SECONDS``) and the local node as the scheduler's
discovery last found it: a local node that discovery reached but found
NotReady (its preflight canary failed, say) fails this part with its reason.
The portal does not import the scheduler; it asks the objects that ``app.py``
put in ``app.extensions`` (``hourglass.engine``, ``hourglass.scheduler`` with
``state`` and ``enabled``).
"""

from flask import Blueprint, current_app, jsonify
from peewee import DatabaseError

from portal.db import database
from portal.models import Node

bp = Blueprint("health", __name__)


def _check_database():
    database.execute_sql("SELECT 1")
    return {"ok": True}


def _check_podman():
    look = current_app.extensions["hourglass.engine"].current()
    if not look.ok:
        return {"ok": False, "error": look.error}
    try:
        local = (Node.select(Node.ready, Node.reason)
                 .where((Node.source == "local") & Node.enabled
                        & Node.last_seen_at.is_null(False)).first())
    except DatabaseError:  # no schema yet: nothing discovered either
        local = None
    if local is not None and not local.ready:
        return {"ok": False, "version": look.version, "error": f"local node: {local.reason}"}
    return {"ok": True, "version": look.version}


def _check_scheduler():
    scheduler = current_app.extensions["hourglass.scheduler"]
    state = scheduler.state
    # A scheduler switched off by HOURGLASS_SCHEDULER=off is not a fault; one
    # that should run but does not is.
    return {"ok": state != "stopped" or not scheduler.enabled, "state": state,
            "enabled": scheduler.enabled}


CHECKS = {"database": _check_database, "podman": _check_podman, "scheduler": _check_scheduler}


@bp.get("/healthz")
def healthz():
    report = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check()
        except Exception as exc:  # any failure of a part is that part's report
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    failed = [name for name, part in report.items() if not part["ok"]]
    body = {"status": "fail" if failed else "ok", "failed": failed, **report}
    return jsonify(body), 503 if failed else 200
