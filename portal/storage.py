"""Renters' folders on the host, under the data folder (``HOURGLASS_DATA``).

One function says where a folder is: ``<data>/users/<user id>/<kind>/<name>``,
with ``kind`` one of ``algorithms`` (mounted at /code), ``datasets`` (read-only
at /dataset) and ``notebooks`` (a notebook's own /code, named by its id). A
name is one path component of ``NAME_RE``: no ``/``, no ``..``, nothing hidden,
so nothing a renter types can point outside their own folder. The portal
(which runs as root, like rootful Podman) makes the folders it mounts owned by
uid/gid 1000, the user JupyterLab runs as in its container.
"""

import os
import re
from pathlib import Path

KINDS = ("algorithms", "datasets", "notebooks")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # a pattern body (``portal.values``)
NAME_RE = re.compile(NAME)
CONTAINER_UID = CONTAINER_GID = 1000  # the notebook image's user (Containerfile.jupyter)


def valid_name(name):
    """Whether ``name`` may name an algorithm or dataset folder."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def user_folder(data_root, user_id, kind, name):
    """The host folder ``name`` of ``kind`` of user ``user_id``; ValueError for a kind, id
    or name that is not allowed (so a path never leaves the user's folder)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of folder: {kind!r}")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id < 1:
        raise ValueError(f"not a user id: {user_id!r}")
    if not valid_name(name):
        raise ValueError(f"not a folder name: {name!r}")
    return Path(data_root) / "users" / str(user_id) / kind / name


def is_folder(path):
    """Whether ``path`` is a real folder (a symbolic link is not one)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink()


def ensure_folder(path):
    """Make ``path`` (and its parents) unless it exists, and give it to the container's
    user when we run as root; returns it. Raises OSError, or FileExistsError when
    something other than a real folder is there."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, CONTAINER_UID, CONTAINER_GID)
    return path
