"""Notebooks' host folders: where a notebook's /code lives under the data folder
(``HOURGLASS_DATA``) and what its containers mount. /code is always the notebook's own
folder, its working copy (filled from its algorithm version when it is made); its dataset
version is read-only at /dataset. Making and checking a folder is ``portal.storage``'s.
"""

from flask import current_app

from portal import storage, versions


def data_root():
    """The data folder of this app (``HOURGLASS_DATA``)."""
    return current_app.config["DATA_ROOT"]


def code_folder(root, notebook):
    """The host folder that is /code in ``notebook``: its own working copy."""
    return storage.user_folder(root, notebook.user_id, "notebooks", str(notebook.id))


def mounts(root, notebook, dataset_version=None):
    """``[(host path, container path, read only)]`` of ``notebook``'s containers: /code,
    and /dataset read-only when it has a dataset version (``dataset_version``, its row,
    read when not given)."""
    if dataset_version is None and notebook.dataset_version_id:
        dataset_version = notebook.dataset_version
    return [(str(code_folder(root, notebook)), "/code", False),
            *versions.mounts(root, dataset_version=dataset_version)]
