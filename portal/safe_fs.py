"""A folder that a container may change while the portal (root) works in it, reached by
file descriptors: each folder is opened relative to the one before it with ``O_NOFOLLOW``,
so a name swapped for a symbolic link mid-operation is refused, never followed. Files are
opened without blocking and kept only when ``fstat`` shows a regular file (never a fifo,
device or link); listings, writes, renames and deletions name an entry relative to an
open folder, never by path.
"""

import errno
import os
import stat

from portal.storage import CONTAINER_GID, CONTAINER_UID

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1024 * 1024
MAX_DEPTH = 100  # folders deeper than this are not walked (one descriptor per level)


class TooLarge(Exception):
    """``write_new`` stopped: the source gave more than its ``budget``."""


def _refusal(dir_fd, name):
    """The error for ``name``, which is not a folder: NotADirectoryError for a regular
    file, FileNotFoundError when gone, ValueError for anything else (a link...)."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return FileNotFoundError(name)
    if stat.S_ISREG(mode):
        return NotADirectoryError(name)
    return ValueError(f"not a folder: {name!r}")


def open_root(root):
    """A descriptor of the folder ``root`` (its last part may not be a link; the parts
    above are the portal's own); FileNotFoundError when no folder is there."""
    try:
        return os.open(root, DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise FileNotFoundError(str(root)) from None
        raise


def open_dir(dir_fd, name):
    """A descriptor of the folder ``name`` in the open folder ``dir_fd``; raises as
    ``_refusal`` says when it is not a folder (a link is never followed)."""
    if name in ("", ".", "..") or "/" in name:
        raise ValueError(f"not a name: {name!r}")
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _refusal(dir_fd, name) from None
        raise


def open_path(root, parts):
    """A descriptor of the folder ``root``/``parts`` (a sequence of names), opened one
    part at a time; the caller closes it."""
    fd = open_root(root)
    try:
        for part in parts:
            child = open_dir(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(dir_fd, name):
    """A blocking read descriptor of the regular file ``name`` in ``dir_fd``;
    IsADirectoryError for a folder, FileNotFoundError, ValueError for anything else (a
    link, fifo or device: never followed, never waited on)."""
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(name)
    if not stat.S_ISREG(mode):
        raise ValueError(f"not a regular file: {name!r}")
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"not a regular file: {name!r}") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped after the check above
        os.close(fd)
        raise ValueError(f"not a regular file: {name!r}")
    os.set_blocking(fd, True)
    return fd


def own(fd):
    """Give the open file or folder ``fd`` to the containers' user when we run as root."""
    if os.geteuid() == 0:
        os.fchown(fd, CONTAINER_UID, CONTAINER_GID)


def write_new(dir_fd, name, stream, mode=0o644, budget=None):
    """Write ``stream`` (``read(n)``) into the new file ``name`` of ``dir_fd`` (made 0600,
    then ``mode`` and owned as ``own`` says); returns bytes written. TooLarge past
    ``budget`` bytes (the file stays: the caller removes what it wrote)."""
    written = 0
    fd = os.open(name, NEW_FLAGS, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            written += len(chunk)
            if budget is not None and written > budget:
                raise TooLarge(name)
            out.write(chunk)
        out.flush()
        os.fchmod(fd, mode)
        own(fd)
    return written


def walk(dir_fd):
    """(parts, lstat, parent fd) of every regular file and folder under the open folder
    ``dir_fd`` (not itself), names sorted, a folder before what it holds; links, fifos and
    devices left out, folders deeper than ``MAX_DEPTH`` not entered. The parent fd is open
    only until the next item is asked for."""
    stack = [(os.dup(dir_fd), (), iter(_names(dir_fd)))]
    try:
        while stack:
            fd, parts, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield parts + (name,), info, fd
            elif stat.S_ISDIR(info.st_mode):
                yield parts + (name,), info, fd
                if len(stack) > MAX_DEPTH:
                    continue
                try:
                    child = open_dir(fd, name)
                except (OSError, ValueError):
                    continue
                stack.append((child, parts + (name,), iter(_names(child))))
    finally:
        for fd, _parts, _names_left in stack:
            os.close(fd)


def _names(dir_fd):
    try:
        with os.scandir(dir_fd) as scan:
            return sorted(item.name for item in scan)
    except OSError:
        return []
