"""Algorithms for renters: list, create (empty or from an uploaded archive), read, delete;
their versions (add from an archive, delete); a notebook's /code saved as a version.

The twin of the renter's algorithm pages, through the same rules (``portal.algorithms``,
``portal.versions``). An archive is sent first through ``/api/v1/uploads`` and named here
by its key. Another renter's algorithm, or a version that is not there, is 404; deleting
what a task that has not ended or a notebook uses is 409. A version's ``id`` is what a
task or notebook names as its ``algorithm_version``.
"""

from flask_babel import lazy_gettext as _l

from portal import algorithms, uploads, versions
from portal.api.auth import api_user
from portal.api.errors import refusals
from portal.api.registry import route
from portal.api.resources import MAX_ID
from portal.api.schema import Array, Integer, Name, Object, Record, String, Text, iso
from portal.notebooks import get_notebook_or_404

VERSION = Record({
    "id": Integer(_l("What a task or notebook names as its version")),
    "number": Integer(_l("1, 2, ... within its algorithm or dataset")),
    "note": String(),
    "size_bytes": Integer(_l("Bytes of its files")),
    "file_count": Integer(),
    "created_at": String(format="date-time"),
}, name="Version")

ALGORITHM = Record({
    "id": Integer(),
    "name": String(),
    "description": String(),
    "created_at": String(format="date-time"),
    "versions": Array(VERSION, _l("Newest first")),
}, name="Algorithm")



def upload_key(description):
    """A finished upload's key in a body (``portal.uploads.KEY_RE``)."""
    return String(description, min_length=1, max_length=64, pattern=uploads.KEY_RE.pattern,
                  rule=_l("an upload's key"))


NOTE = Text(versions.NOTE_MAX, _l("A note on the version"))

NEW_ALGORITHM = Object({
    "name": Name(algorithms.NAME_MAX, _l("Unique among your algorithms (a name taken: 409)")),
    "description": Text(algorithms.DESCRIPTION_MAX),
    "upload": upload_key(_l("The key of a finished upload of a zip or tar archive (unpacked "
                            "safely: a path that leaves the folder, a link, a device file or "
                            "too many bytes or files: 409); left out: an empty version 1")),
    "note": NOTE,
}, required=("name",), name="NewAlgorithm")

NEW_VERSION = Object({
    "upload": upload_key(_l("The key of a finished upload of a zip or tar archive; left "
                            "out: an empty version")),
    "note": NOTE,
}, name="NewAlgorithmVersion")

SAVE_CODE = Object({
    "algorithm": Integer(_l("One of your algorithms, by id; left out: a new algorithm "
                            "named 'name'"), minimum=1, maximum=MAX_ID),
    "name": Name(algorithms.NAME_MAX, _l("The new algorithm's name (without 'algorithm')")),
    "note": NOTE,
}, name="SaveNotebookCode")


def version_json(version):
    """A version as ``VERSION`` describes it."""
    return {"id": version.id, "number": version.number, "note": version.note,
            "size_bytes": version.size_bytes, "file_count": version.file_count,
            "created_at": iso(version.created_at)}


def _algorithm_json(algorithm):
    return {"id": algorithm.id, "name": algorithm.name, "description": algorithm.description,
            "created_at": iso(algorithm.created_at),
            "versions": [version_json(v) for v in versions.versions(algorithm)]}


def _mine(algorithm_id):
    return algorithms.get_algorithm_or_404(api_user(), algorithm_id)


@route("/algorithms", summary=_l("Your algorithms, by name, with their versions"),
       role="renter", response=Array(ALGORITHM))
def list_algorithms():
    return [_algorithm_json(a) for a in algorithms.algorithms_of(api_user())]


@route("/algorithms", "POST", summary=_l("Create an algorithm: version 1 from an uploaded "
                                         "archive, or empty"), role="renter",
       body=NEW_ALGORITHM, response=ALGORITHM, status=201)
def create_algorithm_api(body):
    with refusals():
        made = algorithms.create_algorithm(api_user(), body["name"],
                                           body.get("description", ""), body.get("upload"),
                                           body.get("note", ""))
    return _algorithm_json(made)


@route("/algorithms/<int:algorithm_id>", summary=_l("One of your algorithms"), role="renter",
       response=ALGORITHM)
def get_algorithm_api(algorithm_id):
    return _algorithm_json(_mine(algorithm_id))


@route("/algorithms/<int:algorithm_id>", "DELETE",
       summary=_l("Delete an algorithm with its versions and files (409 while a task that "
                  "has not ended or a notebook uses one)"), role="renter")
def delete_algorithm_api(algorithm_id):
    with refusals():
        versions.delete_owner(_mine(algorithm_id))


@route("/algorithms/<int:algorithm_id>/versions", summary=_l("An algorithm's versions, "
                                                             "newest first"),
       role="renter", response=Array(VERSION))
def list_algorithm_versions(algorithm_id):
    return [version_json(v) for v in versions.versions(_mine(algorithm_id))]


@route("/algorithms/<int:algorithm_id>/versions", "POST",
       summary=_l("Add a version from an uploaded archive (empty without one)"),
       role="renter", body=NEW_VERSION, response=VERSION, status=201)
def create_algorithm_version(algorithm_id, body):
    algorithm = _mine(algorithm_id)
    with refusals():
        return version_json(algorithms.new_version(algorithm, body.get("upload"),
                                                   body.get("note", "")))


@route("/algorithms/<int:algorithm_id>/versions/<int:number>", "DELETE",
       summary=_l("Delete a version and its files (409 while used)"), role="renter")
def delete_algorithm_version(algorithm_id, number):
    version = versions.get_version_or_404(_mine(algorithm_id), number)
    with refusals():
        versions.delete_version(version)


@route("/notebooks/<int:notebook_id>/save-code", "POST",
       summary=_l("Save a notebook's /code (running or not) as the next version of one of "
                  "your algorithms, or of a new one"), role="renter", body=SAVE_CODE,
       response=VERSION, status=201)
def save_notebook_code_api(notebook_id, body):
    notebook = get_notebook_or_404(api_user(), notebook_id)
    with refusals():
        return version_json(algorithms.save_notebook_code(
            notebook, body.get("algorithm"), body.get("name"), body.get("note", "")))
