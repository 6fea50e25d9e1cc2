"""Datasets for renters: list (their own and those shared with their groups), create from
uploaded files and archives, read, delete; versions (add, delete); sharing with groups.

The twin of the renter's dataset pages, through the same rules (``portal.datasets``,
``portal.versions``). Files are sent first through ``/api/v1/uploads`` and named here by
their keys; archives (by name: .zip, .tar, .tar.gz...) are unpacked, other files kept as
they are. A dataset neither yours nor shared with you is 404; changing one shared with
you is 403; deleting what a task that has not ended or a notebook uses is 409. A
version's ``id`` is what a task or notebook names as its ``dataset_version``.
"""

from flask_babel import lazy_gettext as _l

from portal import datasets, versions
from portal.api.algorithms import NOTE, VERSION, upload_key, version_json
from portal.api.auth import api_user
from portal.api.errors import refusals
from portal.api.registry import route
from portal.api.resources import MAX_ID
from portal.api.schema import Array, Boolean, Integer, Name, Object, Record, String, Text, iso

DATASET = Record({
    "id": Integer(),
    "name": String(),
    "description": String(),
    "owner": String(_l("The user name of its owner")),
    "mine": Boolean(_l("Whether it is yours (else shared with you, read-only)")),
    "shared_with": Array(Record({"id": Integer(), "name": String()}, name="GroupRef"),
                         _l("The groups it is shared with (only for its owner)")),
    "created_at": String(format="date-time"),
    "versions": Array(VERSION, _l("Newest first")),
}, name="Dataset")

UPLOADS = Array(upload_key(_l("The key of a finished upload of yours")),
                _l("Finished uploads: archives are unpacked, other files kept as they are (a "
                   "name twice, an unsafe archive: 409)"), max_items=datasets.MAX_UPLOADS)

NEW_DATASET = Object({
    "name": Name(datasets.NAME_MAX, _l("Unique among your datasets (a name taken: 409)")),
    "description": Text(datasets.DESCRIPTION_MAX),
    "uploads": UPLOADS,
    "note": NOTE,
}, required=("name",), name="NewDataset")

NEW_VERSION = Object({
    "uploads": UPLOADS,
    "note": NOTE,
    "keep_previous": Boolean(_l("Start from a copy of the newest version's files")),
}, name="NewDatasetVersion")

SHARE = Object({"group": Integer(_l("One of your groups, by id (another: 409)"), minimum=1,
                           maximum=MAX_ID)},
               required=("group",), name="DatasetShare")


def _dataset_json(dataset, user):
    mine = dataset.user_id == user.id
    return {"id": dataset.id, "name": dataset.name, "description": dataset.description,
            "owner": dataset.user.name, "mine": mine,
            "shared_with": [{"id": g.id, "name": g.name} for g in datasets.shares(dataset)]
            if mine else [],
            "created_at": iso(dataset.created_at),
            "versions": [version_json(v) for v in versions.versions(dataset)]}


def _one(dataset_id, change=False):
    return datasets.get_dataset_or_404(api_user(), dataset_id, change=change)


@route("/datasets", summary=_l("Your datasets and those shared with your groups, yours "
                               "first, with their versions"), role="renter",
       response=Array(DATASET))
def list_datasets():
    user = api_user()
    return [_dataset_json(d, user) for d in datasets.datasets_of(user)]


@route("/datasets", "POST", summary=_l("Create a dataset: version 1 from uploaded files and "
                                       "archives, or empty"), role="renter",
       body=NEW_DATASET, response=DATASET, status=201)
def create_dataset_api(body):
    user = api_user()
    with refusals():
        made = datasets.create_dataset(user, body["name"], body.get("description", ""),
                                       body.get("uploads", []), body.get("note", ""))
    return _dataset_json(made, user)


@route("/datasets/<int:dataset_id>", summary=_l("A dataset you may read"), role="renter",
       response=DATASET)
def get_dataset_api(dataset_id):
    return _dataset_json(_one(dataset_id), api_user())


@route("/datasets/<int:dataset_id>", "DELETE",
       summary=_l("Delete your dataset with its versions and files (409 while a task that "
                  "has not ended or a notebook uses one)"), role="renter")
def delete_dataset_api(dataset_id):
    with refusals():
        versions.delete_owner(_one(dataset_id, change=True))


@route("/datasets/<int:dataset_id>/versions", "POST",
       summary=_l("Add a version of your dataset from uploaded files and archives"),
       role="renter", body=NEW_VERSION, response=VERSION, status=201)
def create_dataset_version(dataset_id, body):
    dataset = _one(dataset_id, change=True)
    with refusals():
        return version_json(datasets.new_version(dataset, body.get("uploads", []),
                                                 body.get("note", ""),
                                                 body.get("keep_previous", False)))


@route("/datasets/<int:dataset_id>/versions", role="renter", response=Array(VERSION),
       summary=_l("A dataset's versions, newest first"))
def list_dataset_versions(dataset_id):
    return list(map(version_json, versions.versions(_one(dataset_id))))


@route("/datasets/<int:dataset_id>/versions/<int:number>", "DELETE",
       summary=_l("Delete a version of your dataset and its files (409 while used)"),
       role="renter")
def delete_dataset_version(dataset_id, number):
    version = versions.get_version_or_404(_one(dataset_id, change=True), number)
    with refusals():
        versions.delete_version(version)


@route("/datasets/<int:dataset_id>/shares", "POST",
       summary=_l("Share your dataset read-only with one of your groups"), role="renter",
       body=SHARE, response=DATASET)
def share_dataset_api(dataset_id, body):
    dataset = _one(dataset_id, change=True)
    with refusals():
        datasets.share(dataset, body["group"])
    return _dataset_json(dataset, api_user())


@route("/datasets/<int:dataset_id>/shares/<int:group_id>", "DELETE",
       summary=_l("Stop sharing your dataset with a group"), role="renter")
def unshare_dataset_api(dataset_id, group_id):
    datasets.unshare(_one(dataset_id, change=True), group_id)
