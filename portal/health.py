"""``GET /healthz``: is the database, Podman and the scheduler each working.

The portal does not import the scheduler; it asks the objects that
``app.py`` put in ``app.extensions`` (``hourglass.backend`` with
``version()``, ``hourglass.scheduler`` with ``state`` and ``enabled``).
"""

from flask import Blueprint, current_app, jsonify

from portal.db import database

bp = Blueprint("health", __name__)


def _check_database():
    database.execute_sql("SELECT 1")
    return {"ok": True}


def _check_podman():
    return {"ok": True, "version": current_app.extensions["hourglass.backend"].version()}


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
