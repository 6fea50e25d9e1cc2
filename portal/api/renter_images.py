"""The renter's images, the twin of their Images page: list (presets and their own), read
one with its log, add one (from a finished upload, from a Containerfile, from a running
notebook), delete one. Another renter's image is 404. An addition answers 202 with the
image ``pending``: follow it with ``GET /images/{id}?after=N`` until it is ``ready`` or
``failed``.
"""

from flask import request
from flask_babel import lazy_gettext as _l

from portal import images, notebooks, values
from portal.api.auth import api_user
from portal.api.errors import ApiError, refusals
from portal.api.registry import route
from portal.api.schema import Array, Boolean, Integer, Name, Object, Record, String, Text, iso
from portal.models import IMAGE_SOURCES, IMAGE_STATES

IMAGE = Record({
    "id": Integer(),
    "name": String(),
    "reference": String(_l("The engine's name: what a task or notebook's image names")),
    "preset": Boolean(_l("Offered by the miner to everyone (cannot be deleted)")),
    "source": String(_l("commit: a saved notebook"), enum=IMAGE_SOURCES),
    "state": String(enum=IMAGE_STATES),
    "reason": String(_l("Why it failed")),
    "jupyter": Boolean(_l("Contains JupyterLab: notebooks can use it")),
    "size_bytes": Integer(),
    "created_at": String(format="date-time"),
}, name="RenterImage")

LINE = Record({"number": Integer(_l("From 1")), "text": String()}, name="RenterImageLine")
IMAGE_LOG = Record({
    "image": IMAGE,
    "containerfile": String(_l("What it was built from; empty for other sources")),
    "running": Boolean(_l("Still being added: ask again with 'after'")),
    "last_line": Integer(_l("Number of the newest log line; pass it as 'after' next time")),
    "lines": Array(LINE, _l("Log lines after 'after'")),
}, name="RenterImageLog")

_NAME = Name(images.NAME_MAX)
UPLOAD = Object({
    "name": _NAME,
    "upload": String(_l("The key of your finished upload of a podman save archive"),
                     min_length=1, max_length=64, pattern="[A-Za-z0-9_-]+",
                     rule=_l("an upload key")),
}, required=("name", "upload"), name="NewImageUpload")
BUILD = Object({
    "name": _NAME,
    "containerfile": Text(images.CONTAINERFILE_MAX, _l(
        "Built with no network and no build arguments, FROM a preset or one of your images"),
        required=True),
}, required=("name", "containerfile"), name="NewImageBuild")
SAVE = Object({"name": _NAME}, required=("name",), name="NewImageFromNotebook")


def image_json(image):
    return {"id": image.id, "name": image.name, "reference": image.reference,
            "preset": image.user_id is None, "source": image.source, "state": image.state,
            "reason": image.reason, "jupyter": image.jupyter, "size_bytes": image.size_bytes,
            "created_at": iso(image.created_at)}


def _add(add, *args):
    """``add(the caller, *args)``: the new image, or the rules' refusal (409)."""
    with refusals():
        return image_json(add(api_user(), *args))


@route("/images", summary=_l("The presets and your images"), role="renter",
       response=Array(IMAGE))
def list_renter_images():
    return [image_json(image) for image in images.visible(api_user())]


@route("/images/<int:image_id>", summary=_l(
    "One image with its log lines after the query's 'after' (a line number; default 0)"),
       role="renter", response=IMAGE_LOG)
def get_renter_image(image_id):
    try:
        after = values.optional_whole_number(request.args.get("after"), 0, 10**12) or 0
    except values.ValueProblem as exc:
        raise ApiError(400, "invalid", str(exc), {"after": str(exc)}) from None
    image = images.get_image_or_404(api_user(), image_id)
    log = images.log_view(image, after)
    return {"image": image_json(image), "containerfile": image.containerfile, **log}


@route("/images/upload", "POST", summary=_l(
    "Add an image from your finished upload of a podman save archive (in the background)"),
       role="renter", body=UPLOAD, response=IMAGE, status=202)
def upload_renter_image(body):
    return _add(images.add_upload, body["name"], body["upload"])


@route("/images/build", "POST", summary=_l(
    "Build an image from a Containerfile (in the background; its log streams)"),
       role="renter", body=BUILD, response=IMAGE, status=202)
def build_renter_image(body):
    return _add(images.add_build, body["name"], body["containerfile"])


@route("/notebooks/<int:notebook_id>/image", "POST", summary=_l(
    "Save your running notebook (its first subtask's container) as a new image"),
       role="renter", body=SAVE, response=IMAGE, status=202)
def save_notebook_image_api(notebook_id, body):
    notebook = notebooks.get_notebook_or_404(api_user(), notebook_id)
    return _add(images.save_notebook, notebook, body["name"])


@route("/images/<int:image_id>", "DELETE", summary=_l(
    "Delete your image from every node (refused while something uses it)"), role="renter")
def delete_renter_image(image_id):
    image = images.get_image_or_404(api_user(), image_id)
    with refusals():
        images.delete_image(api_user(), image)
