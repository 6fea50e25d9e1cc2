"""Zip and tar archives, unpacked safely (``unpack``) and a folder streamed as one
(``stream_archive``).

The rules ``unpack`` keeps, whatever the archive says of itself:

- The kind is read from the content (zip, or tar plain/gzip/bzip2/xz), never the name.
- Every member's name becomes a relative path inside the destination: a backslash is a
  separator (Windows zips), empty and ``.`` parts are dropped; ``..``, an absolute path,
  a drive letter (``C:``) or a control character refuses the archive.
- Only regular files and folders: every link (symbolic or hard, wherever it points), device
  file and fifo refuses the archive.
- A name twice (or a file where a folder is, or the reverse) refuses the archive; a
  folder named twice is fine.
- Names not in UTF-8 are read as GBK (Chinese Windows archivers), else as CP 437 in a zip
  (the zip format's own default) and refused in a tar.
- ``Limits``: the bytes really written are counted (a zip's declared sizes are not
  trusted) and writing stops as soon as they pass ``max_bytes``; more than ``max_files``
  members (files and folders) is refused before anything is written.
- Files are written 0644 (0755 when the archive marks them executable), folders 0755,
  never setuid; owned by the container's user (``storage.CONTAINER_UID``) when we run
  as root.
- All of it goes to a hidden sibling folder first, renamed to ``dest`` only when every
  member was written; on any failure that folder is removed, so nothing half-written stays.
"""

import lzma
import os
import secrets
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from flask_babel import gettext as _

from portal import safe_fs, storage

CHUNK = 1024 * 1024
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first; an empty zip
UTF8_FLAG = 0x800  # zip general-purpose bit 11: the names are UTF-8
ENCRYPTED_FLAG = 0x1
# What a damaged archive raises while it is read (NotImplementedError: a zip compression
# method Python cannot read).
DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
           NotImplementedError)


class ArchiveError(ValueError):
    """An archive refused; the message says why, for the person who sent it."""


@dataclass(frozen=True)
class Limits:
    """At most ``max_bytes`` unpacked and ``max_files`` members (files and folders)."""

    max_bytes: int
    max_files: int


@dataclass(frozen=True)
class Stats:
    """What an unpacked folder holds: bytes of its files and how many files."""

    size_bytes: int
    file_count: int


@dataclass(frozen=True)
class _Member:
    parts: tuple
    is_dir: bool
    executable: bool
    mtime: float
    open: object  # () -> a binary file object of its content (files only)


def size_text(size):
    """Bytes in the largest unit that keeps a number of at least 1 (``2.0 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def limits():
    """This app's limits (``HOURGLASS_UNPACK_MAX_BYTES``, ``HOURGLASS_UNPACK_MAX_FILES``)."""
    config = current_app.config
    return Limits(config["UNPACK_MAX_BYTES"], config["UNPACK_MAX_FILES"])


def decode_name(raw, zip_default):
    """A member's name from its bytes: UTF-8, else GBK, else CP 437 for a zip
    (``zip_default``); ArchiveError for a tar name in none of them."""
    for encoding in ("utf-8", "gbk"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    if zip_default:
        return raw.decode("cp437")
    raise ArchiveError(_("A name in the archive is in no known encoding (UTF-8 or GBK): "
                         "%(name)s", name=raw.decode("utf-8", "replace")))


def member_parts(name):
    """``name`` as a tuple of path parts inside the destination; ArchiveError when it would
    leave it or holds a control character."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ArchiveError(_("A name in the archive holds a control character: %(name)s",
                             name=repr(name)))
    text = name.replace("\\", "/")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if text.startswith("/") or ".." in parts or (parts and len(parts[0]) >= 2
                                                  and parts[0][1] == ":"):
        raise ArchiveError(_("The archive names a file outside its folder: %(name)s",
                             name=name))
    if any(len(p.encode()) > 255 for p in parts):
        raise ArchiveError(_("A name in the archive is too long: %(name)s", name=name))
    return parts


def _refuse_kind(name):
    raise ArchiveError(_("The archive holds a link, device file or fifo (only files and "
                         "folders are allowed): %(name)s", name=name))


def _zip_members(archive, lim):
    infos = archive.infolist()
    _check_count(len(infos), lim)
    for info in infos:
        raw = info.filename.encode("utf-8" if info.flag_bits & UTF8_FLAG else "cp437")
        name = info.filename if info.flag_bits & UTF8_FLAG else decode_name(raw, True)
        if info.flag_bits & ENCRYPTED_FLAG:
            raise ArchiveError(_("The archive is encrypted: %(name)s", name=name))
        mode = info.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: not said
            _refuse_kind(name)
        yield _Member(member_parts(name), info.is_dir(), bool(mode & 0o100),
                      time.mktime(info.date_time + (0, 0, -1)),
                      lambda info=info: archive.open(info))


def _tar_members(archive, lim):
    count = 0
    for info in archive:
        count += 1
        _check_count(count, lim)
        name = decode_name(info.name.encode("utf-8", "surrogateescape"), False)
        if not (info.isreg() or info.isdir()):
            _refuse_kind(name)
        yield _Member(member_parts(name), info.isdir(), bool(info.mode & 0o100), info.mtime,
                      lambda info=info: archive.extractfile(info))


def _check_count(count, lim):
    if count > lim.max_files:
        raise ArchiveError(_("The archive holds more than %(n)d files and folders.",
                             n=lim.max_files))


def _open(path):
    """(the archive object, its member generator function) by its first bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head in ZIP_MAGIC:
            return zipfile.ZipFile(path), _zip_members
        return tarfile.open(path, "r:*", encoding="utf-8", errors="surrogateescape"), \
            _tar_members
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error):
        raise ArchiveError(_("This is not a zip or tar archive (plain, gzip, bzip2 or xz), "
                             "or it is damaged.")) from None


def _own(path):
    if os.geteuid() == 0:
        os.chown(path, storage.CONTAINER_UID, storage.CONTAINER_GID, follow_symlinks=False)


def _make_dirs(root, parts, kinds):
    """Make the folders ``parts`` under ``root``; ArchiveError where a file is."""
    for i in range(1, len(parts) + 1):
        key = parts[:i]
        kind = kinds.get(key)
        if kind == "file":
            raise ArchiveError(_("The archive holds a name twice: %(name)s",
                                 name="/".join(key)))
        if kind is None:
            kinds[key] = "dir"
            path = root.joinpath(*key)
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
            _own(path)


def _write(root, member, kinds, budget, cap):
    """Write one file member; returns bytes written; ArchiveError past ``budget`` (what is
    left of ``cap``)."""
    if member.parts in kinds:
        raise ArchiveError(_("The archive holds a name twice: %(name)s",
                             name="/".join(member.parts)))
    _make_dirs(root, member.parts[:-1], kinds)
    kinds[member.parts] = "file"
    path = root.joinpath(*member.parts)
    mode = 0o755 if member.executable else 0o644
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out, member.open() as source:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise ArchiveError(_("The archive unpacks to more than the limit of "
                                     "%(size)s.", size=size_text(cap)))
            out.write(chunk)
    os.chmod(path, mode)
    _own(path)
    try:
        os.utime(path, (member.mtime, member.mtime))
    except (OverflowError, ValueError):
        raise ArchiveError(_("A date in the archive is out of range: %(name)s",
                             name="/".join(member.parts))) from None
    return written


def unpack(archive_path, dest, lim):
    """Unpack the zip or tar ``archive_path`` into the new folder ``dest`` (its parent
    exists, it does not) under ``lim``; returns Stats. ArchiveError (nothing left behind)
    when the archive breaks a rule of this module."""
    dest = Path(dest)
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest} exists")
    archive, members = _open(archive_path)
    temp = dest.parent / f".{dest.name}.unpack-{secrets.token_hex(6)}"
    os.mkdir(temp, 0o755)
    try:
        with archive:
            kinds, size, files = {}, 0, 0
            for member in members(archive, lim):
                if member.is_dir:
                    _make_dirs(temp, member.parts, kinds)
                elif not member.parts:
                    raise ArchiveError(_("The archive holds a file without a name."))
                else:
                    size += _write(temp, member, kinds, lim.max_bytes - size, lim.max_bytes)
                    files += 1
        os.chmod(temp, 0o755)
        _own(temp)
        os.rename(temp, dest)
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        # OSError without errno: a decompressor's "invalid data", not the disk's trouble.
        if isinstance(exc, DAMAGED) or (isinstance(exc, OSError) and exc.errno is None):
            raise ArchiveError(_("The archive is damaged, or compressed in a way this "
                                 "server cannot read: %(error)s", error=str(exc))) from None
        raise
    return Stats(size, files)


def stream_archive(folder, name, parts=()):
    """The folder ``parts`` (names, checked by the caller) under ``folder`` as a
    gzip-compressed tar whose top folder is ``name``, as an iterator of bytes: built as it
    is sent, never whole in memory or on disk, read through ``portal.safe_fs`` (no link
    followed). Links and anything but files and folders are left out; a file that shrinks
    while it is read is padded with zeros (its size was already written)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip format
    fd = safe_fs.open_path(folder, parts)
    try:
        yield compressor.compress(_header(name, os.fstat(fd)))
        for names, info, parent in safe_fs.walk(fd):
            arcname = "/".join((name, *names))
            if not stat.S_ISREG(info.st_mode):
                yield compressor.compress(_header(arcname, info))
                continue
            try:
                source = os.fdopen(safe_fs.open_file(parent, names[-1]), "rb")
            except (OSError, ValueError):  # changed since it was listed
                continue
            with source:
                info = os.fstat(source.fileno())
                yield compressor.compress(_header(arcname, info))
                yield from _file_blocks(source, info.st_size, compressor)
    finally:
        os.close(fd)
    yield compressor.compress(b"\0" * (2 * tarfile.BLOCKSIZE))
    yield compressor.flush()


def _header(arcname, info):
    """The tar header of a file or folder (``info``: its stat), owned by root."""
    entry = tarfile.TarInfo(arcname)
    entry.mtime = int(info.st_mtime)
    entry.uid = entry.gid = 0
    if stat.S_ISDIR(info.st_mode):
        entry.type, entry.mode = tarfile.DIRTYPE, 0o755
    else:
        entry.type, entry.size = tarfile.REGTYPE, info.st_size
        entry.mode = 0o755 if info.st_mode & 0o100 else 0o644
    return entry.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_blocks(source, size, compressor):
    left = size
    while left and (chunk := source.read(min(CHUNK, left))):
        left -= len(chunk)
        yield compressor.compress(chunk)
    padding = left + (-size) % tarfile.BLOCKSIZE
    while padding:
        piece = min(padding, CHUNK)
        padding -= piece
        yield compressor.compress(b"\0" * piece)
