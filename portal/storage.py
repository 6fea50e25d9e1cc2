"""Renters' folders on the host, under the data folder (``HOURGLASS_DATA``).

Two functions say where a folder is: ``user_folder`` (``<data>/users/<user id>/notebooks/
<notebook id>``, a notebook's own /code) and ``version_folder`` (``<data>/algorithms/
<algorithm id>/<number>``, ``<data>/datasets/<dataset id>/<number>``: a version's files,
never changed once saved). Every part of a path is an id, a number or a fixed word, so
nothing a renter types can point elsewhere. The portal (which runs as root, like rootful
Podman) makes the folders it mounts owned by uid/gid 1000, the user JupyterLab runs as in
its container.
"""

import os
import re
from pathlib import Path

KINDS = ("notebooks",)
VERSION_KINDS = ("algorithms", "datasets")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # a pattern body (``portal.values``)
NAME_RE = re.compile(NAME)
CONTAINER_UID = CONTAINER_GID = 1000  # the notebook image's user (Containerfile.jupyter)


def valid_name(name):
    """Whether ``name`` may name a folder of ``user_folder``."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def _positive(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"not {what}: {value!r}")
    return value


def user_folder(data_root, user_id, kind, name):
    """The host folder ``name`` of ``kind`` of user ``user_id``; ValueError for a kind, id
    or name that is not allowed (so a path never leaves the user's folder)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of folder: {kind!r}")
    _positive(user_id, "a user id")
    if not valid_name(name):
        raise ValueError(f"not a folder name: {name!r}")
    return Path(data_root) / "users" / str(user_id) / kind / name


def version_folder(data_root, kind, owner_id, number=None):
    """The host folder of version ``number`` of algorithm or dataset ``owner_id`` (``kind``
    "algorithms" or "datasets"), or with ``number`` None the folder of all its versions;
    ValueError for anything else."""
    if kind not in VERSION_KINDS:
        raise ValueError(f"unknown kind of version: {kind!r}")
    parent = Path(data_root) / kind / str(_positive(owner_id, "an id"))
    return parent if number is None else parent / str(_positive(number, "a version number"))


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

