"""Notebooks' host folders: where a notebook's /code and /dataset live under the data folder
(``HOURGLASS_DATA``), what its containers mount, and the folders a renter may choose.
Making and checking a folder is ``portal.storage``'s.
"""

from flask import current_app

from portal import storage


def data_root():
    """The data folder of this app (``HOURGLASS_DATA``)."""
    return current_app.config["DATA_ROOT"]


def code_folder(root, notebook):
    """The host folder that is /code in ``notebook``: its algorithm's, else its own."""
    if notebook.algorithm:
        return storage.user_folder(root, notebook.user_id, "algorithms", notebook.algorithm)
    return storage.user_folder(root, notebook.user_id, "notebooks", str(notebook.id))


def dataset_folder(root, user_id, name):
    """The host folder of ``user_id``'s dataset ``name`` (/dataset, read-only)."""
    return storage.user_folder(root, user_id, "datasets", name)


def mounts(root, notebook):
    """``[(host path, container path, read only)]`` of ``notebook``'s containers: /code,
    and /dataset read-only when it has one."""
    found = [(str(code_folder(root, notebook)), "/code", False)]
    if notebook.dataset:
        found.append((str(dataset_folder(root, notebook.user_id, notebook.dataset)),
                      "/dataset", True))
    return found


def folder_names(root, user, kind):
    """The names of ``user``'s folders of ``kind`` that exist, sorted (for the form)."""
    parent = storage.user_folder(root, user.id, kind, "x").parent
    try:
        return sorted(p.name for p in parent.iterdir()
                      if storage.valid_name(p.name) and storage.is_folder(p))
    except OSError:
        return []
