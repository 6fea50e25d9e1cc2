"""Notebooks' lifecycle: create, start, stop and delete -- the rules the renter's notebook
pages and the JSON API share.

A ``Notebook`` is what a renter keeps: a name, an image with ``jupyter-lab``, a spec, a
pool, a number of subtasks (1-8), an algorithm version and a dataset version (either may be
none). /code, its working directory, is always the notebook's own folder: a working copy
filled from its algorithm version when it is made, which ``portal.algorithms`` can save as
a new version; the dataset version is read-only at /dataset (``portal.notebook_folders``).
Each start is a new run: a ``Task`` of kind
"notebook" with subtasks ``lab-0`` ... of one replica each, written by
``tasks.write_task`` and placed, started, followed and billed like any task. The
scheduler starts JupyterLab with its own arguments and the run's ``Task.secret`` as the
Jupyter token; that token is never shown, put in a URL or logged, and is not in
``Task.env``. Files live in the host folder, so stopping and starting again shows the same
files. Starting a run hides the notebook's earlier, ended runs (``Task.deleted``, which
also has the scheduler remove their containers); their rows stay for billing.

Checks are those of training tasks (``portal.task_input``): name, image, pool open to the
renter, a usable spec that fits the pool, and a balance covering the miner's minimum
period of the run. Bad input raises ``NotebookError`` (a ``TaskError``) naming every
field at once; nothing is saved then. What a renter sees is ``portal.notebook_views``.
"""

import json
import secrets

from flask import abort, current_app, has_app_context
from flask_babel import gettext as _
from peewee import IntegrityError

from portal import (
    algorithms,
    datasets,
    files,
    images,
    ledger,
    run_limits,
    storage,
    values,
    versions,
)
from portal.access import open_pools
from portal.db import database
from portal.models import REPLICA_ENDED, Notebook, Replica, Task
from portal.notebook_folders import code_folder, data_root
from portal.pools import default_pool, pool_views
from portal.signals import tasks_changed
from portal.specs import spec_views
from portal.task_input import (
    TaskError,
    check_fields,
    check_image,
    check_name,
    check_pool,
    check_subtasks,
)
from portal.tasks import request_stop, wake, write_task

MAX_COUNT = 8
ROLE = "lab"  # subtask i is lab-i
PLACEHOLDER_ARGV = ["jupyter-lab"]  # the scheduler decides the real arguments


class NotebookError(TaskError):
    """Bad input or a refused action; ``errors`` maps a field (``name``, ``spec``,
    ``count``, ``algorithm_version``, ``dataset_version``...; ``None``: the notebook) to
    its message."""


def _make_code_folder(notebook, algorithm_version=None):
    """Make the notebook's /code folder, filled with the files of ``algorithm_version``."""
    try:
        folder = code_folder(data_root(), notebook)
        if algorithm_version is not None:
            folder.parent.mkdir(parents=True, exist_ok=True)
            files.copy_tree(versions.folder(algorithm_version), folder)
        storage.ensure_folder(folder)
    except (OSError, ValueError):  # ValueError: past the copy's limits (ArchiveError)
        current_app.logger.exception("cannot make the /code folder of notebook %s",
                                     notebook.id)
        raise NotebookError({None: _("The notebook's folder could not be made on the server; "
                                     "tell the owner of this cloud.")}) from None


# --- checking what was typed -------------------------------------------------------------


def _count(value):
    return values.checked(NotebookError, "count", values.whole_number, value, 1, MAX_COUNT,
                          message=_("Subtasks: a whole number from 1 to %(n)d.", n=MAX_COUNT))


def _algorithm_version(user, value):
    return versions.pick(value, lambda vid: algorithms.usable_version(user, vid),
                         NotebookError, "algorithm_version",
                         _("Choose a version of one of your algorithms."))


def _dataset_version(user, value):
    return versions.pick(value, lambda vid: datasets.usable_version(user, vid),
                         NotebookError, "dataset_version",
                         _("Choose a version of a dataset you may use."))


def _spec(spec_name, pool, pools, specs):
    """The ``SpecView`` of ``spec_name`` (usable by the renter, fitting ``pool``)."""
    try:
        return check_subtasks([(f"{ROLE}-0", spec_name, 1)], pool, pools, specs)[0][1]
    except TaskError as exc:
        raise NotebookError({"spec": next(iter(exc.errors.values()))}) from None


def _refusal(user, spec, count):
    return ledger.start_refusal(user, ledger.minimum_for(spec.spec.price_per_hour * count))


# --- what a renter does ------------------------------------------------------------------


def create_notebook(user, name, image, spec, pool, count=1, algorithm_version=None,
                    dataset_version=None, start=True, max_run_minutes=None):
    """Check everything, then save the notebook, make its /code folder (owned by the
    container's user) and, with ``start``, start its first run; one transaction. ``spec``
    and ``pool`` are names, ``algorithm_version`` and ``dataset_version`` version ids (or
    None / ""), ``max_run_minutes`` each run's maximum run time (``portal.run_limits``).
    Raises NotebookError with the message of every bad field; nothing is saved then."""
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    errors, checked = {}, {}
    check_fields({"name": lambda: check_name(name),
                  "image": lambda: images.check_usable(user, check_image(image), jupyter=True),
                  "pool": lambda: check_pool(pools, pool), "count": lambda: _count(count),
                  "algorithm_version": lambda: _algorithm_version(user, algorithm_version),
                  "dataset_version": lambda: _dataset_version(user, dataset_version),
                  "spec": lambda: _spec(spec, checked.get("pool"), pools, specs),
                  "max_run_minutes": lambda: run_limits.check_minutes(
                      max_run_minutes, checked["pool"].pool if "pool" in checked else None)},
                 checked, errors)
    if errors:
        raise NotebookError(errors)
    if start and (refusal := _refusal(user, checked["spec"], checked["count"])):
        raise NotebookError({None: refusal})
    try:
        with database.atomic():
            notebook = Notebook.create(
                user=user, name=checked["name"], image=checked["image"],
                spec=checked["spec"].spec, pool=checked["pool"].pool, count=checked["count"],
                algorithm_version=checked["algorithm_version"],
                dataset_version=checked["dataset_version"],
                max_run_minutes=checked["max_run_minutes"])
            _make_code_folder(notebook, checked["algorithm_version"])
            run = _write_run(notebook, checked["spec"].spec, checked["pool"].pool) if start \
                else None
    except IntegrityError:  # the spec or pool was deleted since it was checked
        raise NotebookError({None: _("The spec or pool no longer exists: reload the page.")}
                            ) from None
    if run is not None:
        wake(run)
    return notebook


def start_notebook(notebook):
    """Start a new run of ``notebook`` with its settings, checked again (a spec disabled or
    a pool closed since is refused, so is a balance short of the minimum period); returns
    the run (``Task``). Refused while a run has not ended. The earlier runs count as
    deleted from then on, so the sweep removes their containers: a notebook keeps only its
    latest run's."""
    if notebook.deleted:
        raise NotebookError({None: _("This notebook was deleted.")})
    user = notebook.user
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    pool_row = notebook.pool if notebook.pool_id else default_pool()
    spec_row = notebook.spec if notebook.spec_id else None
    try:
        pool = check_pool(pools, pool_row.name)
    except TaskError:
        raise NotebookError({None: _("The pool '%(name)s' is no longer open to you.",
                                     name=pool_row.name)}) from None
    if spec_row is None:
        raise NotebookError({None: _("The spec of this notebook was deleted.")})
    spec = _spec(spec_row.name, pool, pools, specs)
    if notebook.dataset_version_id and datasets.usable_version(
            user, notebook.dataset_version_id) is None:
        raise NotebookError({None: _("The dataset of this notebook is no longer shared with "
                                     "you.")})
    if refusal := _refusal(user, spec, notebook.count):
        raise NotebookError({None: refusal})
    with database.atomic():
        # Writing the notebook's row first locks it (PostgreSQL; SQLite's transactions
        # take the database), so two starts at once cannot both find no active run.
        Notebook.update(count=Notebook.count).where(Notebook.id == notebook.id).execute()
        if active_run(notebook) is not None:
            raise NotebookError({None: _("This notebook is running already.")})
        Task.update(deleted=True).where(Task.notebook == notebook.id).execute()
        _make_code_folder(notebook)
        run = _write_run(notebook, spec.spec, pool.pool)
    wake(run)
    return run


def _write_run(notebook, spec, pool):
    """A pending run of ``notebook`` (``tasks.write_task``): the task, ``count`` subtasks of
    one replica, their "submitted" events. Call inside a transaction."""
    run = Task(user=notebook.user_id, kind="notebook", notebook=notebook,
               secret=secrets.token_urlsafe(32), name=notebook.name, image=notebook.image,
               argv=json.dumps(PLACEHOLDER_ARGV), env="{}", pool=pool, state="pending",
               max_run_minutes=notebook.max_run_minutes)
    return write_task(run, [(f"{ROLE}-{index}", spec, 1)
                            for index in range(notebook.count)]).task


def active_run(notebook):
    """The run of ``notebook`` that has a replica not ended yet, or None."""
    return (Task.select().join(Replica)
            .where(Task.notebook == notebook.id, Replica.state.not_in(REPLICA_ENDED))
            .order_by(Task.id.desc()).first())


def stop_notebook(notebook):
    """Stop the running notebook (its files stay); refused when nothing runs."""
    run = active_run(notebook)
    if run is None:
        raise NotebookError({None: _("This notebook is not running.")})
    try:
        request_stop(run)
    except TaskError:  # it ended meanwhile
        raise NotebookError({None: _("This notebook is not running.")}) from None
    return run


def delete_notebook(notebook):
    """Hide a notebook that does not run, with its runs. Rows and their machine-time stay
    (billing refers to them), and so do the files; the scheduler removes the containers."""
    with database.atomic():
        if active_run(notebook) is not None:
            raise NotebookError({None: _("Stop the notebook and wait for it to end before "
                                         "deleting it.")})
        Notebook.update(deleted=True).where(Notebook.id == notebook.id).execute()
        Task.update(deleted=True).where(Task.notebook == notebook.id).execute()
        notebook.deleted = True
    if has_app_context():  # the scheduler removes the containers now
        tasks_changed.send(current_app._get_current_object(), notebook_id=notebook.id)


def get_notebook_or_404(user, notebook_id):
    """``user``'s notebook ``notebook_id``; another renter's, a deleted one or none at all
    is the same 404."""
    found = None
    if isinstance(notebook_id, int) and 0 < notebook_id < 2**63:
        found = Notebook.get_or_none(Notebook.id == notebook_id, Notebook.user == user,
                                     Notebook.deleted == False)  # noqa: E712
    if found is None:
        abort(404)
    return found
