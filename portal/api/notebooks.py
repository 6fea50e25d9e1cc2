"""Notebooks for renters: create, list, read, start, stop, delete.

The twin of the renter's notebook pages, through the same rules
(``portal.notebooks``). Another renter's notebook, a deleted one and a missing one are
the same 404. A notebook's ``run`` is its latest run (null before the first start), with
its replicas; the Jupyter token of a run is in no answer. ``GET .../ready`` is a long poll:
it answers as soon as JupyterLab answers on every subtask (``portal.proxy.ready``).
"""

import time

from flask import current_app, request
from flask_babel import lazy_gettext as _l

from portal import notebook_views, notebooks, task_input, task_views, values
from portal.api.auth import api_user
from portal.api.errors import ApiError, refusals
from portal.api.registry import route
from portal.api.resources import MAX_ID
from portal.api.schema import Array, Boolean, Integer, Name, Object, Record, String, iso
from portal.api.tasks import (
    DATASET_VERSION,
    IMAGE,
    MAX_RUN,
    OWN_MAX_RUN,
    POOL_NAME,
    REPLICA_RUN,
    SPEC_NAME,
    STATE,
    replica_run,
)
from portal.proxy import ready

LAB = Record({
    "id": Integer(),
    "role": String(_l("Its subtask: lab-0, lab-1...")),
    **REPLICA_RUN,
    "charged": Integer(_l("Micro-units charged for it so far")),
}, name="NotebookReplica")

_RUN_FIELDS = {
    "id": Integer(_l("The run's task id")),
    "state": String(STATE),
    "stop_requested": Boolean(),
    "reason": String(_l("Why a pending run waits, as the scheduler last said")),
    "submitted_at": String(format="date-time"),
    "cost": Integer(_l("Micro-units charged for this run so far (live while it runs)")),
    "replicas": Array(LAB),
}
RUN = Object(_RUN_FIELDS, required=tuple(_RUN_FIELDS), name="NotebookRun", nullable=True,
             description=_l("The latest run; null before the first start"))

NOTEBOOK = Record({
    "id": Integer(),
    "name": String(),
    "image": String(),
    "spec": String(_l("The spec's name; null once the miner deleted it"), nullable=True),
    "pool": String(_l("The pool's name; null: the default pool"), nullable=True),
    "count": Integer(_l("Subtasks, each one JupyterLab container")),
    "algorithm_version": Integer(_l("The algorithm version /code was filled from, by id"),
                                 nullable=True),
    "dataset_version": Integer(_l("The dataset version at /dataset (read-only), by id"),
                               nullable=True),
    "max_run_minutes": OWN_MAX_RUN,
    "created_at": String(format="date-time"),
    "state": String(STATE, nullable=True),
    "run": RUN,
}, name="Notebook")

NEW_NOTEBOOK = Object({
    "name": Name(task_input.NAME_MAX, _l("HTML and any Unicode are kept as data")),
    "image": String(_l("An image with jupyter-lab; Hourglass's JupyterLab image when left "
                       "out"), min_length=1, max_length=IMAGE.max_length,
                    pattern=IMAGE.pattern, rule=IMAGE.rule),
    "spec": SPEC_NAME,
    "pool": POOL_NAME,
    "count": Integer(_l("Subtasks, 1 to 8 (1 when left out)"), minimum=1,
                     maximum=notebooks.MAX_COUNT),
    "algorithm_version": Integer(_l("The id of a version of one of your algorithms: /code, "
                                    "the notebook's own folder, starts as a copy of it "
                                    "(another: 409); null or left out: empty"),
                                 nullable=True, minimum=1, maximum=MAX_ID),
    "dataset_version": DATASET_VERSION,
    "max_run_minutes": MAX_RUN,
    "start": Boolean(_l("Start it at once (true when left out)")),
}, required=("name", "spec", "pool"), name="NewNotebook")


READY = Record({
    "ready": Boolean(_l("Whether JupyterLab answers on every subtask: Open works")),
    "state": String(STATE, nullable=True),
    "step": Integer(_l("1 waiting for a place, 2 starting the container, 3 waiting for "
                       "JupyterLab to answer, 4 ready; null when no run starts or runs"),
                    nullable=True),
    "text": String(_l("The step in words, or why there is none")),
    "replicas": Array(Record({
        "id": Integer(),
        "role": String(_l("Its subtask: lab-0, lab-1...")),
        "state": String(STATE),
        "ready": Boolean(_l("Whether its JupyterLab answers")),
    }, name="NotebookReadyReplica")),
    "waited_ms": Integer(_l("How long the server waited before answering")),
}, name="NotebookReady")
WAIT_SECONDS = 5  # how long GET .../ready waits when ?wait= is left out
MAX_WAIT_SECONDS = 10


def _wait_seconds():
    value = request.args.get("wait")
    if value is None:
        return WAIT_SECONDS
    try:
        return values.whole_number(value, 0, MAX_WAIT_SECONDS)
    except values.ValueProblem:
        raise ApiError(400, "invalid", _l("'wait' must be a whole number of seconds from 0 "
                                          "to %(n)d.", n=MAX_WAIT_SECONDS),
                       {"wait": _l("A whole number of seconds from 0 to %(n)d.",
                                   n=MAX_WAIT_SECONDS)}) from None


def ready_json(view, progress, waited):
    """``NotebookView`` ``view`` (its ``answering`` set) and its ``Progress`` as ``READY``
    describes them."""
    run, answering = view.run, view.answering or frozenset()
    replicas = [] if run is None else [
        {"id": item.replica.id, "role": sub.subtask.role, "state": item.replica.state,
         "ready": item.replica.id in answering}
        for sub in run.subtasks for item in sub.replicas]
    if progress is not None:
        text = progress.text
    elif view.stopping:
        text = _l("This notebook is stopping.")
    else:
        text = _l("This notebook is not running.")
    return {"ready": progress is not None and progress.ready, "state": view.state,
            "step": progress.step if progress else None, "text": str(text),
            "replicas": replicas, "waited_ms": round(waited * 1000)}


def _run(view):
    if view is None:
        return None
    replicas = [{"id": item.replica.id, "role": sub.subtask.role,
                 **replica_run(item.replica), "charged": item.replica.charged}
                for sub in view.subtasks for item in sub.replicas]
    task = view.task
    return {"id": task.id, "state": view.state, "stop_requested": task.stop_requested,
            "reason": task_views.reason_text(task.reason), "submitted_at": iso(task.submitted_at),
            "cost": view.cost, "replicas": replicas}


def notebook_json(view):
    """A ``NotebookView`` as ``NOTEBOOK`` describes it."""
    notebook = view.notebook
    return {
        "id": notebook.id, "name": notebook.name, "image": notebook.image,
        "spec": notebook.spec.name if notebook.spec_id else None,
        "pool": notebook.pool.name if notebook.pool_id else None,
        "count": notebook.count, "algorithm_version": notebook.algorithm_version_id,
        "dataset_version": notebook.dataset_version_id,
        "max_run_minutes": notebook.max_run_minutes,
        "created_at": iso(notebook.created_at), "state": view.state, "run": _run(view.run),
    }


def _one(notebook):
    return notebook_json(notebook_views.notebook_view(notebook))


def _act(notebook_id, action):
    """``action(notebook)`` on one of the caller's notebooks (Start, Stop), then the notebook
    as it is."""
    notebook = notebooks.get_notebook_or_404(api_user(), notebook_id)
    with refusals():
        action(notebook)
    return _one(notebook)


@route("/notebooks", summary=_l("Your notebooks, newest first, with their latest run"),
       role="renter", response=Array(NOTEBOOK))
def list_notebooks():
    return [notebook_json(view) for view in notebook_views.notebook_views(api_user())]


@route("/notebooks", "POST", summary=_l("Create a notebook (and start it, unless start is "
                                        "false)"), role="renter", body=NEW_NOTEBOOK,
       response=NOTEBOOK, status=201)
def create_notebook_api(body):
    with refusals():
        notebook = notebooks.create_notebook(
            api_user(), body["name"], body.get("image", current_app.config["JUPYTER_IMAGE"]),
            body["spec"], body["pool"], body.get("count", 1), body.get("algorithm_version"),
            body.get("dataset_version"), start=body.get("start", True),
            max_run_minutes=body.get("max_run_minutes"))
    return _one(notebook)


@route("/notebooks/<int:notebook_id>", summary=_l("One of your notebooks with its latest "
                                                  "run"), role="renter", response=NOTEBOOK)
def get_notebook_api(notebook_id):
    return _one(notebooks.get_notebook_or_404(api_user(), notebook_id))


@route("/notebooks/<int:notebook_id>/start", "POST",
       summary=_l("Start a new run (409 while one runs, or when the spec, pool or balance "
                  "no longer allows it)"), role="renter", response=NOTEBOOK)
def start_notebook_api(notebook_id):
    return _act(notebook_id, notebooks.start_notebook)


@route("/notebooks/<int:notebook_id>/stop", "POST",
       summary=_l("Stop the running notebook; its files stay (409 when it does not run)"),
       role="renter", response=NOTEBOOK)
def stop_notebook_api(notebook_id):
    return _act(notebook_id, notebooks.stop_notebook)


@route("/notebooks/<int:notebook_id>", "DELETE",
       summary=_l("Delete a notebook that does not run (409 while it runs); its records "
                  "stay for billing"), role="renter")
def delete_notebook_api(notebook_id):
    with refusals():
        notebooks.delete_notebook(notebooks.get_notebook_or_404(api_user(), notebook_id))


@route("/notebooks/<int:notebook_id>/ready",
       summary=_l("Whether JupyterLab of your notebook answers, and the step of its start. "
                  "A long poll: it waits up to 'wait' seconds (query, 0-10, 5 when left "
                  "out), asking every 50 ms, and answers the moment JupyterLab answers on "
                  "every subtask, or when the run ends"), role="renter", response=READY)
def notebook_ready_api(notebook_id):
    notebook = notebooks.get_notebook_or_404(api_user(), notebook_id)
    wait = _wait_seconds()
    started = time.monotonic()
    view, progress = ready.watch(notebook, wait=wait)
    return ready_json(view, progress, time.monotonic() - started)
