"""A renter's files on the host, reached safely from a URL or a form, for the pages that
browse, view, copy and receive them.

A file or folder is named by a root and a relative path from a URL (``relpath``, parts
joined by "/"); ``..``, ``.`` and empty parts and control characters are refused
(ValueError). A container may change the folder while we work in it, so every operation
goes through ``portal.safe_fs``: folders opened one part at a time by descriptor, never
following a link (ValueError), a file read only when it is a regular file. Listings
(``entries``), sizes (``stats``) and copies (``copy_tree``) see only regular files and
folders; links, devices and fifos are left out. Written files are 0644 and folders 0755,
owned by the container's user (``storage.CONTAINER_UID``) when we run as root.
"""

import errno
import os
import re
import secrets
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask_babel import gettext as _

from portal import safe_fs, storage
from portal.archives import ArchiveError, limits, size_text
from portal.values import _BIDI, _CONTROL, _LINE, _SPACE

TEXT_LIMIT = 1024 * 1024
NAME_MAX = 255  # characters, and bytes in UTF-8 (the file system's limit)
_BAD = f"{_CONTROL}{_BIDI}{_LINE}/"
# A file name: one line, no '/', no spaces at either end, not only dots ("." and "..").
FILE_NAME = rf"(?:[^{_BAD}{_SPACE}][^{_BAD}]*)?[^{_BAD}{_SPACE}.](?:[^{_BAD}]*[^{_BAD}{_SPACE}])?"

_FILE_NAME_RE = re.compile(FILE_NAME)


@dataclass(frozen=True)
class Entry:
    """One file or folder of a listing; ``relpath`` is from the root, ``modified`` UTC."""

    name: str
    relpath: str
    is_dir: bool
    size: int
    modified: datetime


def _bad_part(part):
    return part in ("", ".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in part)


def check_name(name):
    """``name`` if it may name a file in a folder (``FILE_NAME``, at most 255 bytes in
    UTF-8); ValueError otherwise."""
    if not isinstance(name, str) or not _FILE_NAME_RE.fullmatch(name) \
            or len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        raise ValueError(f"not a file name: {name!r}")
    return name


def split(relpath):
    """``relpath`` as a tuple of names; ValueError for a path that could leave the root
    (``..``, ``.`` or empty parts, control characters)."""
    parts = tuple(relpath.split("/")) if relpath else ()
    if any(_bad_part(part) for part in parts):
        raise ValueError(f"not a relative path: {relpath!r}")
    return parts


@contextmanager
def _folder(root, parts):
    fd = safe_fs.open_path(root, parts)
    try:
        yield fd
    finally:
        os.close(fd)


def _modified(info):
    return datetime.fromtimestamp(info.st_mtime, UTC).replace(tzinfo=None)


def _entry(name, relpath, info):
    is_dir = stat.S_ISDIR(info.st_mode)
    return Entry(name, relpath, is_dir, 0 if is_dir else info.st_size, _modified(info))


def entry(root, relpath):
    """The Entry of the file or folder ``relpath`` under ``root``. ValueError for a path
    that could leave the root, passes a link or is neither file nor folder;
    FileNotFoundError when nothing is there (NotADirectoryError: a file on the way)."""
    parts = split(relpath)
    if not parts:
        with _folder(root, ()) as fd:
            return _entry(Path(root).name, "", os.fstat(fd))
    with _folder(root, parts[:-1]) as fd:
        info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise ValueError(f"neither a file nor a folder: {relpath!r}")
    return _entry(parts[-1], relpath, info)


def entries(root, relpath):
    """The files and folders in the folder ``relpath`` under ``root``: folders first, then
    by name (case folded). Raises as ``entry``, and NotADirectoryError for a file."""
    prefix = f"{relpath}/" if relpath else ""
    found = []
    with _folder(root, split(relpath)) as fd, os.scandir(fd) as scan:
        for item in scan:
            try:
                info = os.stat(item.name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) \
                    and not _bad_part(item.name):
                found.append(_entry(item.name, prefix + item.name, info))
    return sorted(found, key=lambda e: (not e.is_dir, e.name.casefold(), e.name))


def open_file(root, relpath):
    """The regular file ``relpath`` under ``root``, open for reading (binary; the caller
    closes it). Raises as ``entry``; ValueError for a fifo, device or link, and
    IsADirectoryError for a folder."""
    parts = split(relpath)
    if not parts:
        raise IsADirectoryError(relpath)
    with _folder(root, parts[:-1]) as fd:
        return os.fdopen(safe_fs.open_file(fd, parts[-1]), "rb")


def read_text(root, relpath, limit=TEXT_LIMIT):
    """The text of the file ``relpath`` under ``root`` (UTF-8), or None when it is larger
    than ``limit`` bytes or not text (a NUL byte, or not UTF-8). Raises as ``open_file``."""
    with open_file(root, relpath) as f:
        data = f.read(limit + 1)
    if len(data) > limit or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def stats(folder):
    """(bytes of the files, number of files) under ``folder``."""
    size = count = 0
    with _folder(folder, ()) as fd:
        for _names, info, _parent in safe_fs.walk(fd):
            if stat.S_ISREG(info.st_mode):
                size += info.st_size
                count += 1
    return size, count


def _temp_sibling(path, what):
    return Path(path).parent / f".{Path(path).name}.{what}-{secrets.token_hex(6)}"


def copy_tree(src, dst, lim=None):
    """Copy the folder ``src`` to the new folder ``dst`` (it must not exist, nor be seen by
    a container): regular files (their content: a hard link becomes a file of its own) and
    folders only, no link followed. ArchiveError past ``lim`` (``archives.limits()`` when
    None): bytes written, files and folders, or folders deeper than ``safe_fs.MAX_DEPTH``.
    Written beside ``dst`` and renamed into place at the end; nothing is left of it when
    the copy fails."""
    lim = lim or limits()
    dst = Path(dst)
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst} exists")
    temp = _temp_sibling(dst, "copy")
    with _folder(src, ()) as src_fd:
        os.mkdir(temp, 0o755)
        try:
            size = count = 0
            for parts, info, parent in safe_fs.walk(src_fd):
                count += 1
                if count > lim.max_files:
                    raise ArchiveError(_("The folder holds more than %(n)d files and "
                                         "folders.", n=lim.max_files))
                size += _copy_entry(parent, parts, info, temp, lim.max_bytes - size,
                                    lim.max_bytes)
            _own_path(temp)
            os.rename(temp, dst)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise


def _own_path(path):
    fd = os.open(path, safe_fs.DIR_FLAGS)
    try:
        safe_fs.own(fd)
    finally:
        os.close(fd)


def _copy_entry(parent, parts, info, temp, budget, cap):
    """Copy one walked file or folder into ``temp`` (ours, by path); bytes written."""
    target = temp.joinpath(*parts)
    if stat.S_ISDIR(info.st_mode):
        if len(parts) > safe_fs.MAX_DEPTH:
            raise ArchiveError(_("The folder holds folders nested more than %(n)d deep.",
                                 n=safe_fs.MAX_DEPTH))
        os.mkdir(target, 0o755)
        _own_path(target)
        return 0
    too_large = ArchiveError(_("The folder holds more than the limit of %(size)s.",
                               size=size_text(cap)))
    try:
        fd = safe_fs.open_file(parent, parts[-1])
    except (OSError, ValueError):  # changed since it was listed: left out, as a link is
        return 0
    with os.fdopen(fd, "rb") as source:
        if os.fstat(fd).st_size > budget:
            raise too_large
        mode = 0o755 if os.fstat(fd).st_mode & 0o100 else 0o644
        try:
            return safe_fs.write_new(None, target, source, mode, budget)
        except safe_fs.TooLarge:
            raise too_large from None


def _place(root, relpath, name, fill):
    """Put a new file ``name`` in the folder ``relpath`` under ``root`` (replacing a file
    of that name, never a folder): ``fill(folder fd, temp name)`` makes it beside, then it
    is renamed into place. Returns the Entry of the new file."""
    check_name(name)
    temp = f".part-{secrets.token_hex(8)}"
    with _folder(root, split(relpath)) as fd:
        try:
            fill(fd, temp)
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)  # EISDIR: a folder
        except BaseException:
            try:
                os.unlink(temp, dir_fd=fd)
            except FileNotFoundError:
                pass
            raise
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    return _entry(name, f"{relpath}/{name}" if relpath else name, info)


def save_stream(root, relpath, name, stream):
    """Write ``stream`` (anything with ``read(n)``) as the file ``name`` in the folder
    ``relpath`` under ``root``, in chunks, through a temporary file renamed into place;
    returns its Entry. ValueError for a bad name, IsADirectoryError when a folder has that
    name; raises as ``entries`` for the folder."""
    return _place(root, relpath, name, lambda fd, temp: safe_fs.write_new(fd, temp, stream))


def move_in(root, relpath, name, source):
    """Move the file ``source`` (a completed upload, in a folder no container sees) into
    the folder ``relpath`` under ``root`` as ``name``, as ``save_stream`` does but renamed
    rather than copied when both are on one file system."""
    def fill(fd, temp):
        os.chmod(source, 0o644)
        if os.geteuid() == 0:
            os.chown(source, storage.CONTAINER_UID, storage.CONTAINER_GID)
        try:
            os.rename(source, temp, dst_dir_fd=fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # not another file system
                raise
            with open(source, "rb") as stream:
                safe_fs.write_new(fd, temp, stream)
            os.unlink(source)

    return _place(root, relpath, name, fill)


def remove(root, relpath):
    """Delete the file ``relpath`` under ``root`` (never a folder or the root itself);
    raises as ``entry`` and IsADirectoryError for a folder."""
    parts = split(relpath)
    if not parts:
        raise IsADirectoryError(relpath)
    with _folder(root, parts[:-1]) as fd:
        mode = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(relpath)
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a file: {relpath!r}")
        os.unlink(parts[-1], dir_fd=fd)
