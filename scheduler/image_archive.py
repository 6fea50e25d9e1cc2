"""A ``podman save`` archive renamed before it is loaded, so that loading it can only ever
make the one name Hourglass chose: an archive's own names (``RepoTags`` of a docker
archive, the ``ref.name`` annotations of an OCI archive) are replaced, so a renter's
archive named like a preset or another renter's image overwrites nothing.

The archive is read as a tar stream and copied member by member (never unpacked to disk);
only its small index file is read into memory. The engine's loader cleans member paths
(``./manifest.json`` is ``manifest.json``), so an archive with a member name that is not
already clean, or with two members of one name, is refused: its engine-visible index
would not be the one renamed here.
"""

import io
import json
import posixpath
import tarfile

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MAX = 1 << 20  # bytes of manifest.json / index.json read


class ArchiveError(ValueError):
    """Not a ``podman save`` archive of one image."""


def _json(tar, member):
    if not member.isfile() or member.size > INDEX_MAX:
        raise ArchiveError(f"{member.name} is not an image index")
    try:
        return json.load(tar.extractfile(member))
    except ValueError:
        raise ArchiveError(f"{member.name} is not JSON") from None


def _renamed(name, data, reference):
    if name == "manifest.json":  # docker-archive
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
            raise ArchiveError("the archive must hold exactly one image")
        data[0]["RepoTags"] = [reference]
    else:  # index.json of an oci-archive
        manifests = data.get("manifests") if isinstance(data, dict) else None
        if not isinstance(manifests, list) or len(manifests) != 1:
            raise ArchiveError("the archive must hold exactly one image")
        manifests[0].setdefault("annotations", {})[REF_NAME] = reference
    return json.dumps(data).encode()


def _clean(name):
    """``name`` when it is already as the engine's loader would clean it."""
    cleaned = posixpath.normpath(name.lstrip("/")).lstrip("/")
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    if cleaned != name or cleaned in (".", "..") or cleaned.startswith("../"):
        raise ArchiveError(f"the member name {name!r} is not a plain path")
    return name


def rename_archive(source, target, reference):
    """Copy the archive at ``source`` to ``target`` with ``reference`` as its only name.
    Raises ArchiveError when it is not an archive of one image."""
    found = False
    try:
        with tarfile.open(source, "r:*") as tar_in, tarfile.open(target, "w") as tar_out:
            seen = set()
            for member in tar_in:
                if _clean(member.name) in seen:
                    raise ArchiveError(f"the archive holds {member.name!r} twice")
                seen.add(member.name)
                if member.name in ("manifest.json", "index.json"):
                    raw = _renamed(member.name, _json(tar_in, member), reference)
                    member.size = len(raw)
                    tar_out.addfile(member, io.BytesIO(raw))
                    found = True
                elif member.name != "repositories":  # docker-archive's legacy names
                    tar_out.addfile(member, tar_in.extractfile(member) if member.isfile()
                                    else None)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveError(f"not a readable tar archive: {error}") from None
    if not found:
        raise ArchiveError("no manifest.json or index.json: not a `podman save` archive")
    return target
