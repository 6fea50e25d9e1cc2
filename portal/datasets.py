"""Datasets: a renter's data in numbered versions, read-only at /dataset -- create one,
add a version from uploaded files and archives (archives unpacked, other files kept as
they are; optionally on top of a copy of the newest version), share it read-only with
the renter's groups, list, find, delete. Pages and the JSON API share these rules; the
folders are ``portal.versions``'s.

Who sees a dataset: its owner, and the members of each group it is shared with, who may
pick, browse and download it but not change or delete it. Anyone else reads it as
missing (404).
"""

import os

from flask import abort
from flask_babel import gettext as _

from portal import files, values, versions
from portal.access import group_ids_of
from portal.db import database
from portal.models import Dataset, DatasetShare, DatasetVersion, Group, User
from portal.versions import VersionError

NAME_MAX = 64
DESCRIPTION_MAX = 256
MAX_UPLOADS = 100  # files and archives in one new version


def check_name(user, value):
    """A dataset's name as typed (``values.name``), not one of ``user``'s others."""
    name = values.checked(VersionError, "name", values.name, value, NAME_MAX)
    if Dataset.select().where(Dataset.user == user, Dataset.name == name).exists():
        raise VersionError({"name": _("You have a dataset named '%(name)s' already.",
                                      name=name)})
    return name


def _check_uploads(uploads):
    uploads = list(uploads or ())
    if len(uploads) > MAX_UPLOADS:
        raise VersionError({"upload": _("At most %(n)d files at once.", n=MAX_UPLOADS)})
    return uploads


def create_dataset(user, name, description="", uploads=(), note=""):
    """A new dataset of ``user`` with version 1 holding the uploaded files (``uploads``:
    keys of ``portal.uploads``; none: empty). VersionError names every bad field; nothing
    is kept then."""
    return versions.create_owner(
        Dataset, user, {"name": lambda: check_name(user, name),
                        "description": lambda: values.checked(
                            VersionError, "description", values.text, description,
                            DESCRIPTION_MAX),
                        "note": lambda: versions.check_note(note),
                        "upload": lambda: _check_uploads(uploads)},
        lambda dataset, checked: _add(dataset, checked["upload"], checked["note"], None))


def _add(dataset, uploads, note, start_from):
    def fill(path):
        if start_from is not None:
            files.copy_tree(versions.folder(start_from), path)
        else:
            os.mkdir(path)
        for key in uploads:
            versions.add_upload(dataset.user, key, path)
    return versions.make(dataset, fill, note)


def new_version(dataset, uploads, note="", keep_previous=False):
    """The next version of ``dataset``: the uploaded files (archives unpacked), on top of
    a copy of the newest version with ``keep_previous``."""
    note = versions.check_note(note)
    uploads = _check_uploads(uploads)
    if not uploads and not keep_previous:
        raise VersionError({"upload": _("Choose at least one file or archive.")})
    return _add(dataset, uploads, note, versions.latest(dataset) if keep_previous else None)


def visible(user):
    """A query of the datasets ``user`` may read: their own and those shared with one of
    their groups."""
    shared = (DatasetShare.select(DatasetShare.dataset)
              .where(DatasetShare.group.in_(list(group_ids_of(user)) or [0])))
    return Dataset.select(Dataset, User).join(User).where(
        (Dataset.user == user) | Dataset.id.in_(shared))


def datasets_of(user):
    """The datasets ``user`` may read, their own first, each by name, with ``latest`` (its
    newest version or None), ``count`` (its versions) and ``mine``."""
    found = sorted(visible(user), key=lambda d: (d.user_id != user.id, d.name))
    by_id = {d.id: d for d in found}
    for dataset in found:
        dataset.latest, dataset.count, dataset.mine = None, 0, dataset.user_id == user.id
    for version in (DatasetVersion.select().where(DatasetVersion.dataset.in_(list(by_id)))
                    .order_by(DatasetVersion.number)):
        owner = by_id[version.dataset_id]
        owner.latest, owner.count = version, owner.count + 1
    return found


def get_dataset_or_404(user, dataset_id, change=False):
    """A dataset ``user`` may read (404 otherwise); with ``change``, 403 unless it is
    theirs (a dataset shared with them is read-only)."""
    found = visible(user).where(Dataset.id == dataset_id).first() \
        if versions.is_row_id(dataset_id) else None
    if found is None:
        abort(404)
    if change and found.user_id != user.id:
        abort(403)
    return found


def usable_version(user, version_id):
    """The DatasetVersion ``version_id`` when ``user`` may read its dataset, else None."""
    if not versions.is_row_id(version_id):
        return None
    return (DatasetVersion.select(DatasetVersion, Dataset).join(Dataset)
            .where(DatasetVersion.id == version_id,
                   Dataset.id.in_(visible(user).select(Dataset.id))).first())


def version_choices(user):
    """``[(dataset label, [DatasetVersion, newest first])]`` ``user`` may pick: their own by
    name, then those shared with them ("name (shared by rita)")."""
    groups = {}
    for dataset in datasets_of(user):
        label = dataset.name if dataset.mine else _("%(name)s (shared by %(owner)s)",
                                                     name=dataset.name,
                                                     owner=dataset.user.name)
        groups[dataset.id] = (label, [])
    for version in (DatasetVersion.select().where(DatasetVersion.dataset.in_(list(groups)))
                    .order_by(DatasetVersion.number.desc())):
        groups[version.dataset_id][1].append(version)
    return [item for item in groups.values() if item[1]]


def shares(dataset):
    """The groups ``dataset`` is shared with, by name."""
    return list(Group.select().join(DatasetShare)
                .where(DatasetShare.dataset == dataset).order_by(Group.name))


def share_choices(user):
    """The groups ``user`` is a member of (those they may share with), by name."""
    return list(Group.select().where(Group.id.in_(list(group_ids_of(user)) or [0]))
                .order_by(Group.name))


def share(dataset, group_id):
    """Share ``dataset`` read-only with its owner's group ``group_id`` (no change when it
    is already)."""
    if not isinstance(group_id, int) or group_id not in group_ids_of(dataset.user):
        raise VersionError({"group": _("Choose one of your groups.")})
    with database.atomic():
        if not DatasetShare.select().where(DatasetShare.dataset == dataset,
                                           DatasetShare.group == group_id).exists():
            DatasetShare.create(dataset=dataset, group=group_id)


def unshare(dataset, group_id):
    """Stop sharing ``dataset`` with group ``group_id`` (its members' tasks that use it
    keep their mount until they end)."""
    DatasetShare.delete().where(DatasetShare.dataset == dataset,
                                DatasetShare.group == group_id).execute()


def delete_dataset(dataset):
    """Delete ``dataset``, its versions and their files (refused while one is used)."""
    versions.delete_owner(dataset)
