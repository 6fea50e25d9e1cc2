"""The JupyterLab image's build, the Images page's JSON twin: start one, read its progress.

``GET /images/jupyter/build?after=N`` returns the log lines after line N, so a
client that passes the last number it has gets each line once.
"""

from flask import request
from flask_babel import lazy_gettext as _l

from portal.api.errors import ApiError
from portal.api.registry import route
from portal.api.schema import Array, Boolean, Integer, Object, Record, String, iso
from portal.image_builds import AfterError, builds, parse_after

LINE = Record({
    "number": Integer(_l("Grows by one per line, across builds")),
    "text": String(),
}, name="BuildLine")

BUILD = Record({
    "image": String(_l("The image's name (HOURGLASS_JUPYTER_IMAGE)")),
    "installed_version": String(_l(
        "JupyterLab version of the image on this host; \"\" when it has no label; null when "
        "the image is missing"), nullable=True),
    "build": Integer(_l("Number of the latest build since the server started; 0: none yet")),
    "status": String(_l("idle, running, succeeded or failed")),
    "force": Boolean(_l("Every step is done again, even if its result exists")),
    "step": Integer(_l("The step running (or last run), from 1; 0 before the first")),
    "step_count": Integer(),
    "step_name": String(),
    "started_at": String(format="date-time", nullable=True),
    "finished_at": String(format="date-time", nullable=True),
    "error": String(_l("Why the build failed, with the tool's last lines")),
    "last_line": Integer(_l("Number of the newest log line; pass it as 'after' next time")),
    "lines": Array(LINE, _l("The kept log lines (the last 500) after 'after'")),
}, name="ImageBuild")

START = Object({
    "force": Boolean(_l("Do every step again even if its result exists (default false)")),
}, name="ImageBuildStart", description=_l("Send {} for a normal build"))


def build_json(build, installed_version):
    return {
        "image": build["image"], "installed_version": installed_version,
        "build": build["build"], "status": build["status"], "force": build["force"],
        "step": build["step"], "step_count": build["step_count"],
        "step_name": build["step_name"], "started_at": iso(build["started_at"]),
        "finished_at": iso(build["finished_at"]), "error": build["error"],
        "last_line": build["last_line"], "lines": build["lines"],
    }


@route("/images/jupyter/build", summary=_l(
    "The JupyterLab image and its latest build: status, step, log lines after the query's "
    "'after' (a line number; default 0)"), role="miner", response=BUILD)
def get_image_build():
    try:
        after = parse_after(request.args.get("after"))
    except AfterError as exc:
        raise ApiError(400, "invalid", str(exc), {"after": str(exc)}) from None
    return build_json(builds().snapshot(after), builds().installed_version())


@route("/images/jupyter/build", "POST", summary=_l(
    "Build the JupyterLab image in the background (one build at a time: while one runs, "
    "that one is returned); follow it with GET"), role="miner", body=START, response=BUILD,
       status=202)
def start_image_build(body):
    build, _started = builds().start(force=body.get("force", False))
    return build_json(build, builds().installed_version())
