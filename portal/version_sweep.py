"""Sweeping what interrupted changes of algorithms and datasets left behind.

A new version is filled in a hidden staging folder beside its owner's versions
(``.new-*``, and ``*.unpack-*`` ones while an archive is unpacked), a deleted one is
renamed to a hidden ``.trash-*`` folder before it is removed, and an algorithm or a
dataset is saved before its version 1 is filled: a crash on the way leaves these. The
scheduler's leader calls ``sweep`` now and then; it leaves anything younger than a day
alone, so changes under way are not touched.
"""

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from peewee import fn

from portal import storage, versions
from portal.models import utcnow

STALE = timedelta(days=1)


def sweep(max_age=STALE):
    """Remove what an interrupted change left for ``max_age`` (a day): hidden folders and
    files (``.new-*``, ``.trash-*``, the unpacking ones) beside the versions of every
    algorithm and dataset, and algorithms and datasets without a version (made, but their
    version 1 never was). Returns how many things went. Needs the app (the scheduler calls
    it now and then)."""
    cutoff = time.time() - max_age.total_seconds()
    removed = 0
    for kind in storage.VERSION_KINDS:
        for owner in _folders(Path(versions.data_root()) / kind):
            for entry in _folders(owner, hidden=True, files=True):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    _remove(entry)
                    removed += 1
    for owner_model, (kind, model, field) in versions.KINDS.items():
        has_version = model.select().where(getattr(model, field) == owner_model.id)
        stale = [owner_id for (owner_id,) in owner_model.select(owner_model.id).where(
            owner_model.created_at < utcnow() - max_age, ~fn.EXISTS(has_version)).tuples()]
        for owner_id in stale:
            # Only while it still has no version: one may have been saved since.
            if owner_model.delete().where(owner_model.id == owner_id,
                                          ~fn.EXISTS(has_version)).execute():
                shutil.rmtree(storage.version_folder(versions.data_root(), kind, owner_id),
                              ignore_errors=True)
                removed += 1
    return removed


def _folders(path, hidden=False, files=False):
    """The entries of folder ``path`` (none when it is not one): real folders, and files
    too with ``files``; with ``hidden`` only those whose names start with a dot."""
    if not storage.is_folder(path):
        return []
    return [Path(entry.path) for entry in os.scandir(path)
            if entry.name.startswith(".") == hidden
            and (files or entry.is_dir(follow_symlinks=False))]


def _remove(path):
    if storage.is_folder(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
