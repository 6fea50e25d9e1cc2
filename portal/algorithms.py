"""Algorithms: a renter's code in numbered versions -- create one (empty or from an uploaded
zip or tar archive), add a version from an archive or from a notebook's /code, list, find,
delete. The renter's pages and the JSON API share these rules; the folders are
``portal.versions``'s.

An algorithm is its owner's alone: another renter's reads as missing (404). A task gets
a version at /code read-only; a notebook a working copy of one (``portal.notebooks``).
"""

from flask import abort
from flask_babel import gettext as _

from portal import notebook_folders, values, versions
from portal.models import Algorithm, AlgorithmVersion
from portal.versions import VersionError

NAME_MAX = 64
DESCRIPTION_MAX = 256


def check_name(user, value, exclude=None):
    """An algorithm's name as typed (``values.name``), not one of ``user``'s others."""
    name = values.checked(VersionError, "name", values.name, value, NAME_MAX)
    taken = Algorithm.select().where(Algorithm.user == user, Algorithm.name == name)
    if exclude is not None:
        taken = taken.where(Algorithm.id != exclude.id)
    if taken.exists():
        raise VersionError({"name": _("You have an algorithm named '%(name)s' already.",
                                      name=name)})
    return name


def check_description(value):
    return values.checked(VersionError, "description", values.text, value, DESCRIPTION_MAX)


def create_algorithm(user, name, description="", upload=None, note="", source=None):
    """A new algorithm of ``user`` with version 1: the files of the archive uploaded as
    ``upload`` (a key of ``portal.uploads``), a copy of the host folder ``source``, or
    empty. Raises VersionError naming every bad field; nothing is kept then."""
    return versions.create_owner(
        Algorithm, user, {"name": lambda: check_name(user, name),
                          "description": lambda: check_description(description),
                          "note": lambda: versions.check_note(note)},
        lambda algorithm, checked: _add(algorithm, checked["note"], upload, source))


def _add(algorithm, note, upload=None, source=None):
    if source is not None:
        return versions.copy_of(algorithm, source, note)
    if upload is None:
        return versions.empty(algorithm, note)
    return versions.make(algorithm, lambda path: versions.unpack_upload(
        algorithm.user, upload, path), note)


def new_version(algorithm, upload, note=""):
    """The next version of ``algorithm``: the files of the uploaded archive ``upload``."""
    return _add(algorithm, versions.check_note(note), upload)


def save_notebook_code(notebook, algorithm_id=None, name=None, note=""):
    """Save the notebook's /code (its host folder: the notebook may run or not) as the
    next version of the owner's algorithm ``algorithm_id``, or of a new algorithm
    ``name`` when ``algorithm_id`` is None; returns the version."""
    note = versions.check_note(note)
    source = notebook_folders.code_folder(versions.data_root(), notebook)
    if not source.is_dir():
        raise VersionError({None: _("This notebook's /code folder is not on the server.")})
    if algorithm_id is None:
        return versions.latest(create_algorithm(notebook.user, name, note=note,
                                                source=source))
    algorithm = Algorithm.get_or_none(Algorithm.id == algorithm_id,
                                      Algorithm.user == notebook.user_id) \
        if versions.is_row_id(algorithm_id) else None
    if algorithm is None:
        raise VersionError({"algorithm": _("Choose one of your algorithms.")})
    return versions.copy_of(algorithm, source, note)


def algorithms_of(user):
    """``user``'s algorithms, by name, each with ``latest`` (its newest version or None)
    and ``count`` (its number of versions)."""
    found = list(Algorithm.select().where(Algorithm.user == user).order_by(Algorithm.name))
    by_id = {a.id: a for a in found}
    for algorithm in found:
        algorithm.latest, algorithm.count = None, 0
    for version in (AlgorithmVersion.select().where(AlgorithmVersion.algorithm.in_(list(by_id)))
                    .order_by(AlgorithmVersion.number)):
        owner = by_id[version.algorithm_id]
        owner.latest, owner.count = version, owner.count + 1
    return found


def get_algorithm_or_404(user, algorithm_id):
    """``user``'s algorithm ``algorithm_id``; another renter's or none at all is 404."""
    if not versions.is_row_id(algorithm_id):
        abort(404)
    return Algorithm.get_or_none(Algorithm.id == algorithm_id, Algorithm.user == user) \
        or abort(404)


def usable_version(user, version_id):
    """The AlgorithmVersion ``version_id`` when ``user`` owns it, else None."""
    if not versions.is_row_id(version_id):
        return None
    return (AlgorithmVersion.select(AlgorithmVersion, Algorithm).join(Algorithm)
            .where(AlgorithmVersion.id == version_id, Algorithm.user == user).first())


def version_choices(user):
    """``[(algorithm name, [AlgorithmVersion, newest first])]`` ``user`` may pick, by name."""
    groups = {}
    for version in (AlgorithmVersion.select(AlgorithmVersion, Algorithm).join(Algorithm)
                    .where(Algorithm.user == user)
                    .order_by(Algorithm.name, AlgorithmVersion.number.desc())):
        groups.setdefault(version.algorithm.name, []).append(version)
    return list(groups.items())


def delete_algorithm(algorithm):
    """Delete ``algorithm``, its versions and their files (refused while one is used)."""
    versions.delete_owner(algorithm)
