"""Versioned folders, shared by algorithms and datasets: where a version's files are, how
a new version is made (empty, from an archive, from files, a copy of a folder), what it
holds, and deleting versions.

A version's files are ``storage.version_folder``: ``<data>/algorithms/<id>/<number>`` or
``<data>/datasets/<id>/<number>``, never changed once saved. A new version is filled in
a staging folder next to them (``<id>/.new-<random>``, same file system) outside any
transaction, counted, and then, in one short transaction, numbered (the last number + 1),
written as a row and renamed into place; anything failing on the way removes the staging
folder, so no half-written version is ever seen. Files are given to the containers' user
(uid 1000). A version in use (a pending or running task, a notebook not deleted) is not
deleted (``VersionError``); a deleted one's folder is renamed away in the transaction that
deletes its row. ``portal.version_sweep`` removes what a crash left on the way.
"""

import os
import secrets
import shutil
from pathlib import Path

from flask import abort, current_app
from flask_babel import gettext as _
from flask_babel import ngettext
from peewee import IntegrityError, fn

from portal import archives, files, storage, uploads, values
from portal.db import database
from portal.models import (
    REPLICA_ENDED,
    Algorithm,
    AlgorithmVersion,
    Dataset,
    DatasetVersion,
    Notebook,
    Replica,
    Task,
)

NOTE_MAX = 256


class VersionError(values.FieldErrors):
    """A refused change of an algorithm, a dataset or a version; fields are the form's
    (``name``, ``note``, ``upload``...; None: the whole)."""


# {owner model: (kind of folder, version model, the version's field naming its owner)}
KINDS = {Algorithm: ("algorithms", AlgorithmVersion, "algorithm"),
         Dataset: ("datasets", DatasetVersion, "dataset")}


def _kind(owner):
    return KINDS[type(owner)]


def data_root():
    """The data folder of this app (``HOURGLASS_DATA``)."""
    return current_app.config["DATA_ROOT"]


def folder(version, root=None):
    """The host folder of ``version`` (an AlgorithmVersion or DatasetVersion row)."""
    if isinstance(version, AlgorithmVersion):
        kind, owner_id = "algorithms", version.algorithm_id
    else:
        kind, owner_id = "datasets", version.dataset_id
    return storage.version_folder(root or data_root(), kind, owner_id, version.number)


def mounts(root, algorithm_version=None, dataset_version=None):
    """``[(host path, container path, read only)]`` of these versions under the data folder
    ``root``: the algorithm's at /code and the dataset's at /dataset, both read-only."""
    found = []
    if algorithm_version is not None:
        found.append((str(folder(algorithm_version, root)), "/code", True))
    if dataset_version is not None:
        found.append((str(folder(dataset_version, root)), "/dataset", True))
    return found


def check_note(value):
    """A version's note as typed (``values.text``, at most ``NOTE_MAX``)."""
    return values.checked(VersionError, "note", values.text, value, NOTE_MAX)


def create_owner(model, user, checks, first):
    """A new ``model`` (Algorithm or Dataset) of ``user``: ``checks`` ({field: check}) run
    in order, every refusal raised together (VersionError); the row gets the checked
    ``name`` and ``description``, then ``first(owner, checked)`` makes its version 1.
    Nothing is kept when that fails."""
    errors, checked = {}, {}
    for key, check in checks.items():
        try:
            checked[key] = check()
        except VersionError as exc:
            errors.update(exc.errors)
    if errors:
        raise VersionError(errors)
    with database.atomic():
        owner = model.create(user=user, name=checked["name"],
                             description=checked["description"])
    try:
        first(owner, checked)
    except BaseException:
        model.delete().where(model.id == owner.id).execute()
        raise
    return owner


def make(owner, fill, note=""):
    """A new version of ``owner``: ``fill(path)`` makes the folder ``path`` (it does not
    exist yet; raising gives up) beside ``owner``'s versions; it is counted and, in one
    short transaction, numbered, written as a row and renamed into place. Returns the
    version; nothing of it stays when anything fails."""
    kind, model, field = _kind(owner)
    parent = storage.ensure_folder(storage.version_folder(data_root(), kind, owner.id))
    staged = parent / f".new-{secrets.token_hex(8)}"
    try:
        try:
            fill(staged)
        except archives.ArchiveError as exc:  # a copy past the limits
            raise VersionError({None: str(exc)}) from None
        storage.ensure_folder(staged)  # its files are the containers' user's already
        size, count = files.stats(staged)
        try:
            with database.atomic():
                number = (model.select(fn.MAX(model.number))
                          .where(getattr(model, field) == owner.id).scalar() or 0) + 1
                version = model.create(**{field: owner}, number=number, note=note,
                                       size_bytes=size, file_count=count)
                target = folder(version)
                if os.path.lexists(target):  # left by a crash before its row was saved
                    shutil.rmtree(target)
                os.rename(staged, target)
        except IntegrityError:  # another version took the number, or the owner is gone
            raise VersionError({None: _("Another version was saved at the same time, or "
                                        "this was deleted: reload the page and try again.")}
                               ) from None
        return version
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def empty(owner, note=""):
    """A new version of ``owner`` without files."""
    return make(owner, os.mkdir, note)


def copy_of(owner, source, note=""):
    """A new version of ``owner`` holding a copy of the host folder ``source`` (a
    notebook's /code): files and folders only (``files.copy_tree``)."""
    return make(owner, lambda path: files.copy_tree(source, path), note)


ARCHIVE_NAMES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def unpack_upload(user, key, dest):
    """Unpack the zip or tar archive ``user`` uploaded as ``key`` into the new folder
    ``dest`` (``portal.archives``' rules and limits), then drop the upload. VersionError
    naming ``upload`` when it is not there, not complete or not a safe archive."""
    upload, path = _finished(user, key)
    try:
        archives.unpack(path, dest, archives.limits())
    except archives.ArchiveError as exc:
        raise VersionError({"upload": f"{upload.filename}: {exc}"}) from None
    uploads.discard(upload)


def add_upload(user, key, dest):
    """Add what ``user`` uploaded as ``key`` to the folder ``dest``: an archive (by its
    name: ``ARCHIVE_NAMES``) unpacked into it, any other file moved in under its own name;
    a name ``dest`` holds already is refused. Drops the upload."""
    upload, path = _finished(user, key)
    if not upload.filename.lower().endswith(ARCHIVE_NAMES):
        if os.path.lexists(dest / upload.filename):
            raise VersionError({"upload": _("Two files are named '%(name)s'.",
                                            name=upload.filename)})
        files.move_in(dest, "", upload.filename, path)
        uploads.discard(upload)
        return
    temp = dest.parent / f"{dest.name}.unpack-{secrets.token_hex(6)}"
    try:
        unpack_upload(user, key, temp)
        _merge(temp, dest)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _merge(source, dest):
    """Move what ``source`` holds into ``dest``, folder into folder; a file twice is
    refused."""
    for entry in os.scandir(source):
        target = dest / entry.name
        if not os.path.lexists(target):
            os.rename(entry.path, target)
        elif entry.is_dir(follow_symlinks=False) and storage.is_folder(target):
            _merge(Path(entry.path), target)
        else:
            raise VersionError({"upload": _("Two files are named '%(name)s'.",
                                            name=entry.name)})


def _finished(user, key):
    try:
        return uploads.complete(user, key)
    except uploads.UploadError as exc:
        raise VersionError({"upload": str(exc)}) from None


def versions(owner):
    """``owner``'s versions, newest first."""
    model, field = _kind(owner)[1:]
    return list(model.select().where(getattr(model, field) == owner.id)
                .order_by(model.number.desc()))


def latest(owner):
    """``owner``'s newest version, or None."""
    model, field = _kind(owner)[1:]
    return (model.select().where(getattr(model, field) == owner.id)
            .order_by(model.number.desc()).first())


def get_version_or_404(owner, number):
    """``owner``'s version ``number`` (a whole number from a URL), or 404."""
    model, field = _kind(owner)[1:]
    found = None
    if isinstance(number, int) and 0 < number < 2**31:
        found = model.get_or_none(getattr(model, field) == owner.id, model.number == number)
    if found is None:
        abort(404)
    return found


def is_row_id(value):
    """Whether ``value`` may be a row's id (an int from 1 to 2**63 - 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def pick(value, usable, error, field, message):
    """The version that ``value`` names (its id, typed or JSON; None or "" for none) when
    ``usable(id)`` finds it, else ``error({field: message})``: how a task's or a notebook's
    algorithm and dataset versions are checked."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    found = usable(values.row_id(value))
    if found is None:
        raise error({field: message})
    return found


def users_text(model, version_ids):
    """What keeps versions ``version_ids`` of ``model`` from being deleted, in words ("used
    by 2 tasks that have not ended and 1 notebook"), or "" when nothing does."""
    field = "algorithm_version" if model is AlgorithmVersion else "dataset_version"
    if not version_ids:
        return ""
    tasks = (Task.select(Task.id).join(Replica)
             .where(getattr(Task, field).in_(version_ids),
                    Replica.state.not_in(REPLICA_ENDED)).distinct().count())
    notebooks = (Notebook.select().where(getattr(Notebook, field).in_(version_ids),
                                         Notebook.deleted == False).count())  # noqa: E712
    parts = []
    if tasks:
        parts.append(ngettext("%(num)d task that has not ended",
                              "%(num)d tasks that have not ended", tasks))
    if notebooks:
        parts.append(ngettext("%(num)d notebook", "%(num)d notebooks", notebooks))
    return _("Used by %(what)s.", what=_(" and ").join(parts)) if parts else ""


def delete_version(version):
    """Delete ``version`` and its files; VersionError while something uses it. In the
    transaction that deletes the row, its folder is renamed to a hidden ``.trash-*`` one
    beside it (a failure gives the deletion up), removed once that is committed: a version
    made meanwhile with the same number keeps its files."""
    model = type(version)
    target = folder(version)
    trash = target.parent / f".trash-{version.number}-{secrets.token_hex(6)}"
    moved = False
    try:
        with database.atomic():
            if reason := users_text(model, [version.id]):
                raise VersionError({None: reason})
            if os.path.lexists(target):
                os.rename(target, trash)
                moved = True
            model.delete().where(model.id == version.id).execute()
    except BaseException:
        if moved:  # the row stays, and so do its files
            os.rename(trash, target)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def delete_owner(owner):
    """Delete an algorithm or dataset with all its versions and files; VersionError while
    something uses one of its versions."""
    kind, model, field = _kind(owner)
    with database.atomic():
        ids = [v.id for v in model.select(model.id).where(getattr(model, field) == owner.id)]
        if reason := users_text(model, ids):
            raise VersionError({None: reason})
        type(owner).delete().where(type(owner).id == owner.id).execute()
    shutil.rmtree(storage.version_folder(data_root(), kind, owner.id), ignore_errors=True)

