"""Restartable uploads: a file a renter sends in pieces, streamed to disk, never held in
memory, kept across dropped connections.

``create`` makes an ``Upload`` and its empty file ``<data folder>/uploads/<key>.part``;
``append`` adds one piece read from a stream in chunks of ``CHUNK`` bytes, only at the
offset where what was received ends (a client that lost its connection asks ``find`` for
``received`` and goes on from there). What reached the disk stays: ``received`` is the
file's size, stored again after every piece, however it ended. A consumer (a dataset, an
algorithm, an image, a notebook's folder) takes a finished file with ``complete`` and then
``discard``\\ s the upload (or moves the file away first). ``sweep`` removes uploads left
untouched for ``STALE`` (a day) and stray files: the scheduler calls it now and then.
"""

import fcntl
import os
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path

from flask import current_app
from flask_babel import gettext as _

from portal import files, references, values
from portal.models import Upload, utcnow

CHUNK = 1024 * 1024
STALE = timedelta(days=1)
KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class UploadError(values.FieldErrors):
    """An upload refused or not usable; ``errors`` as ``values.FieldErrors``."""


class UploadMissing(UploadError):
    """No such upload of this user (another user's is missing too): the caller's 404."""

    def __init__(self):
        super().__init__({None: _("There is no such upload (or it was removed).")})


class UploadConflict(UploadError):
    """A piece that does not start where the upload's received bytes end, or sent while
    another piece is being written; ``received`` says where to go on."""

    def __init__(self, message, received):
        super().__init__({"offset": message})
        self.received = received


class UploadTooLarge(UploadError):
    """A piece that goes past the upload's size (what fitted was kept)."""


def folder():
    """Where the uploads' files are: ``<data folder>/uploads`` (made when missing, 0700)."""
    path = Path(current_app.config["DATA_ROOT"]) / "uploads"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def part_path(upload):
    """The file of ``upload``."""
    return folder() / f"{upload.key}.part"


def create(user, filename, size):
    """A new upload of ``user``: the file ``filename`` (a file name, ``files.FILE_NAME``)
    of ``size`` bytes (at most ``UPLOAD_MAX_BYTES``). UploadError names the field refused."""
    errors = {}
    try:
        files.check_name(filename)
    except ValueError:
        errors["filename"] = _("A file name: one line, no '/', not only dots, at most 255 "
                               "bytes.")
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
        errors["size"] = _("The size must be a number of bytes from 0 to %(limit)s (%(text)s).",
                           limit=limit, text=files.size_text(limit))
    if errors:
        raise UploadError(errors)
    upload = Upload.create(key=secrets.token_urlsafe(32), user=user, filename=filename,
                           size=size)
    fd = os.open(part_path(upload), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return upload


def find(user, key):
    """``user``'s upload ``key``; UploadMissing for another user's, or none."""
    found = None
    if isinstance(key, str) and KEY_RE.fullmatch(key):
        found = Upload.get_or_none(Upload.key == key, Upload.user == user)
    if found is None:
        raise UploadMissing()
    return found


def append(upload, offset, stream):
    """Write what ``stream`` (``read(n)``) holds at ``offset`` of ``upload`` (None: where
    it ends); returns the upload with ``received`` as on disk. UploadConflict when
    ``offset`` is not where received bytes end, or another piece is being written;
    UploadTooLarge past the size. Whatever reached the disk stays, whatever happened."""
    try:
        fd = os.open(part_path(upload), os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise UploadMissing() from None
    with open(fd, "r+b") as out:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadConflict(_("Another piece of this upload is being sent."),
                                 upload.received) from None
        received = os.fstat(fd).st_size
        if offset is None:
            offset = received
        if offset != received:
            raise UploadConflict(_("The piece must start at byte %(n)d, where what was "
                                   "received ends.", n=received), received)
        out.seek(offset)
        try:
            _copy(stream, out, upload.size - offset)
        finally:
            out.flush()
            upload.received = os.fstat(fd).st_size
            upload.save(only=[Upload.received])
    return upload


def _copy(stream, out, left):
    while chunk := stream.read(CHUNK):
        if len(chunk) > left:
            out.write(chunk[:left])
            raise UploadTooLarge({None: _("The piece goes past the file's size; what "
                                          "fitted was kept.")})
        out.write(chunk)
        left -= len(chunk)


def complete(user, key, field="upload"):
    """(upload, path of its file) of ``user``'s finished upload ``key``. UploadMissing when
    there is none; UploadError({``field``: ...}) when bytes are still missing."""
    upload = find(user, key)
    path = part_path(upload)
    received = path.stat().st_size if path.exists() else 0
    if received != upload.size:
        raise UploadError({field: _("%(name)s is not complete: %(received)s of %(size)s "
                                    "received.", name=upload.filename,
                                    received=files.size_text(received),
                                    size=files.size_text(upload.size))})
    return upload, path


def discard(upload, path=None):
    """Remove ``upload`` and its file (gone already is fine); ``path``: its file, for a
    caller outside the app (a background job), which cannot ask the app where it is."""
    (path or part_path(upload)).unlink(missing_ok=True)
    references.delete_unused(upload)


def sweep(max_age=STALE):
    """Remove the uploads whose file has not changed for ``max_age`` (a day), and files
    under the uploads folder that belong to no upload and are as old; returns how many
    uploads went. Needs the app (the scheduler calls it now and then)."""
    cutoff = time.time() - max_age.total_seconds()
    removed = 0
    for upload in Upload.select().where(Upload.created_at < utcnow() - max_age):
        if _changed(part_path(upload)) < cutoff:
            discard(upload)
            removed += 1
    kept = {f"{key}.part" for (key,) in Upload.select(Upload.key).tuples()}
    for path in folder().iterdir():
        if path.name not in kept and _changed(path) < cutoff:
            path.unlink(missing_ok=True)
    return removed


def _changed(path):
    """When ``path`` last changed (a Unix time; 0 when it is gone)."""
    try:
        return path.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0
