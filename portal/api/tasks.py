"""Training tasks for renters: submit, list, read, stop, run again, delete.

The twin of the renter's task pages, through the same rules (``portal.tasks``,
``portal.task_input``, ``portal.task_views``).
Another renter's task, a deleted one and a missing one are the same 404. Field
names in a 400's ``fields`` are the body's: ``name``, ``argv``,
``subtasks[0].spec``... Replica times are Podman's own, in integer nanoseconds
since the epoch (``started_ns``, ``finished_ns``), exact as billing uses them; a task's
``cost`` is the sum of its replicas' ``charged`` (micro-units), live while it runs.
"""

from flask_babel import lazy_gettext as _l

from portal import task_input, task_views, tasks, values
from portal.api.auth import api_user
from portal.api.errors import refusals
from portal.api.registry import route
from portal.api.resources import MAX_ID
from portal.api.schema import Array, Boolean, Integer, Map, Name, Object, Record, String, iso
from portal.pools import MAX_RUN_MINUTES
from portal.units import NAME_MAX

STATE = _l("pending, starting, running, succeeded, failed, stopped or lost")

EVENT = Record({
    "at": String(format="date-time"),
    "state": String(STATE),
    "reason": String(),
}, name="ReplicaEvent")

# How a replica ran, in a task's replicas and a notebook run's alike (``replica_run``).
REPLICA_RUN = {
    "state": String(STATE),
    "reason": String(),
    "node": String(_l("The node it was placed on"), nullable=True),
    "exit_code": Integer(nullable=True),
    "started_ns": Integer(_l("Podman's StartedAt, nanoseconds since the epoch"), nullable=True),
    "finished_ns": Integer(_l("Podman's FinishedAt, nanoseconds since the epoch"),
                           nullable=True),
}

REPLICA = Record({
    "id": Integer(),
    "role": String(_l("The role of its subtask")),
    "index": Integer(_l("0 to replicas - 1 within its subtask")),
    **REPLICA_RUN,
    "events": Array(EVENT, _l("Every transition, oldest first")),
    "price_per_hour": Integer(_l("Its spec's price when it was placed, micro-units per "
                                 "machine-hour; null before"), nullable=True),
    "billed_seconds": Integer(_l("Seconds of its run charged so far (whole, rounded up)")),
    "charged": Integer(_l("Micro-units charged for it so far")),
}, name="Replica")

SUBTASK = Record({
    "role": String(),
    "spec": String(_l("The spec's name")),
    "spec_id": Integer(),
    "replicas": Integer(_l("How many replicas")),
    "state": String(STATE),
}, name="Subtask")

OWN_MAX_RUN = Integer(_l("Its own maximum run time in minutes (its pool's may be lower); "
                         "null: its pool's"), nullable=True)

_TASK_FIELDS = {
    "id": Integer(),
    "name": String(),
    "image": String(),
    "argv": Array(String(), _l("The command, as a list of arguments (never run by a shell)")),
    "env": Map(String()),
    "pool": String(_l("The pool's name")),
    "state": String(STATE),
    "stop_requested": Boolean(),
    "reason": String(_l("Why a pending task waits, as the scheduler last said")),
    "submitted_at": String(format="date-time"),
    "rerun_of": Integer(_l("The task this one runs again"), nullable=True),
    "algorithm_version": Integer(_l("The algorithm version at /code (read-only), by id"),
                                 nullable=True),
    "dataset_version": Integer(_l("The dataset version at /dataset (read-only), by id"),
                               nullable=True),
    "max_run_minutes": OWN_MAX_RUN,
    "subtasks": Array(SUBTASK),
    "template": Integer(_l("The template it was started from"), nullable=True),
    "cost": Integer(_l("Micro-units charged for its replicas so far (live while it runs)")),
}
TASK_SUMMARY = Record(_TASK_FIELDS, name="TaskSummary")
TASK = Record({**_TASK_FIELDS, "replicas": Array(REPLICA)}, name="Task")

ROLE = String(_l("1-32 of a-z, 0-9 and '-', starting with a letter; unique in the task "
                 "(a role used twice: 409)"), min_length=1, max_length=32, pattern=task_input.ROLE,
              rule=_l("lowercase letters, digits and '-', starting with a letter"))
IMAGE = String(_l("An image reference, e.g. localhost/train:latest"), min_length=1,
               max_length=task_input.IMAGE_MAX, pattern=task_input.IMAGE,
               rule=_l("an image reference: [registry/]name[:tag]"))
SPEC_NAME = Name(NAME_MAX["spec"], _l("The name of a spec you may use (another: 409)"))
POOL_NAME = Name(NAME_MAX["pool"], _l("The name of a pool open to you (another: 409)"))
_ARGUMENT = String(max_length=task_input.ARG_MAX, pattern=values.NO_NUL,
                   rule=_l("text without NUL"))

MAX_RUN = Integer(_l("Stop it after this many minutes of running; at most its pool's maximum "
                     "(more: 409); null or left out: the pool's"), nullable=True, minimum=1,
                  maximum=MAX_RUN_MINUTES)

ALGORITHM_VERSION = Integer(_l("The id of a version of one of your algorithms, read-only at "
                               "/code, the working folder (another: 409); null or left out: "
                               "none"), nullable=True, minimum=1, maximum=MAX_ID)
DATASET_VERSION = Integer(_l("The id of a version of a dataset you may use (yours or shared "
                             "with your group), read-only at /dataset (another: 409); null or "
                             "left out: none"), nullable=True, minimum=1, maximum=MAX_ID)

NEW_SUBTASK = Object({
    "role": ROLE,
    "spec": SPEC_NAME,
    "replicas": Integer(_l("1 to 64"), minimum=1, maximum=task_input.MAX_REPLICAS),
}, required=("role", "spec", "replicas"), name="NewSubtask")

NEW_TASK = Object({
    "name": Name(task_input.NAME_MAX, _l("HTML and any Unicode are kept as data")),
    "image": IMAGE,
    "argv": Array(_ARGUMENT, _l("The command: arguments run as they are, never by a shell; "
                                "the first not empty; 64 KiB in all (more: 409)"),
                  min_items=1, max_items=task_input.MAX_ARGS,
                  first=String(min_length=1, max_length=task_input.ARG_MAX, pattern=values.NO_NUL,
                               rule=_l("text without NUL"))),
    "env": Map(_ARGUMENT, _l("Environment variables; HOURGLASS_*, WORLD_SIZE and RANK are "
                             "Hourglass's"), max_items=task_input.MAX_ENV,
               keys=String(min_length=1, max_length=values.ENV_NAME_MAX,
                           pattern=values.ENV_NAME,
                           rule=_l("letters, digits and _, not starting with a digit")),
               reserved=task_input.RESERVED_ENV, reserved_prefix=task_input.RESERVED_ENV_PREFIX),
    "pool": POOL_NAME,
    "subtasks": Array(NEW_SUBTASK, _l("1 to 8 subtasks"), min_items=1,
                      max_items=task_input.MAX_SUBTASKS),
    "max_run_minutes": MAX_RUN,
    "algorithm_version": ALGORITHM_VERSION,
    "dataset_version": DATASET_VERSION,
}, required=("name", "image", "argv", "pool", "subtasks"), name="NewTask")


def _summary(view):
    task = view.task
    return {
        "id": task.id, "name": task.name, "image": task.image, "argv": view.argv,
        "env": view.env, "pool": task.pool.name, "state": view.state,
        "stop_requested": task.stop_requested, "reason": task_views.reason_text(task.reason),
        "submitted_at": iso(task.submitted_at), "rerun_of": task.rerun_of_id,
        "template": task.template_id, "max_run_minutes": task.max_run_minutes,
        "algorithm_version": task.algorithm_version_id,
        "dataset_version": task.dataset_version_id,
        "subtasks": [{"role": s.subtask.role, "spec": s.subtask.spec.name,
                      "spec_id": s.subtask.spec_id, "replicas": s.count,
                      "state": s.state} for s in view.subtasks],
        "cost": view.cost,
    }


def replica_run(replica):
    """A replica's fields as ``REPLICA_RUN`` describes them."""
    return {"state": replica.state, "reason": task_views.reason_text(replica.reason),
            "node": replica.node.name if replica.node else None,
            "exit_code": replica.exit_code, "started_ns": replica.started_ns,
            "finished_ns": replica.finished_ns}


def _replica(subtask, item):
    replica = item.replica
    return {
        "id": replica.id, "role": subtask.subtask.role, "index": replica.index,
        **replica_run(replica),
        "events": [{"at": iso(e.at), "state": e.state,
                    "reason": task_views.reason_text(e.reason)} for e in item.events],
        "price_per_hour": replica.price_per_hour, "billed_seconds": replica.billed_seconds,
        "charged": replica.charged,
    }


def task_json(task):
    """The whole task as ``TASK`` describes it: subtasks, replicas and their events."""
    return _whole(task_views.task_view(task))


def _whole(view):
    return {**_summary(view), "replicas": [_replica(s, r) for s in view.subtasks
                                           for r in s.replicas]}


@route("/tasks", summary=_l("Your training tasks, newest first"), role="renter",
       response=Array(TASK_SUMMARY))
def list_tasks():
    return [_summary(view) for view in task_views.task_views(api_user())]


@route("/tasks", "POST", summary=_l("Submit a training task"), role="renter", body=NEW_TASK,
       response=TASK, status=201)
def create_task_api(body):
    subtasks = [(s["role"], s["spec"], s["replicas"]) for s in body["subtasks"]]
    with refusals():
        view = tasks.submit_task(api_user(), body["name"], body["image"], body["argv"],
                                 body.get("env", {}), body["pool"], subtasks,
                                 max_run_minutes=body.get("max_run_minutes"),
                                 algorithm_version=body.get("algorithm_version"),
                                 dataset_version=body.get("dataset_version"))
    return _whole(view)  # made from the rows just written: nothing read back


@route("/tasks/<int:task_id>", summary=_l("One of your tasks with its replicas and their "
                                          "transitions"), role="renter", response=TASK)
def get_task_api(task_id):
    return task_json(tasks.get_task_or_404(api_user(), task_id))


@route("/tasks/<int:task_id>/stop", "POST", summary=_l("Stop a task (409 when it has ended)"),
       role="renter", response=TASK)
def stop_task_api(task_id):
    task = tasks.get_task_or_404(api_user(), task_id)
    with refusals():
        tasks.request_stop(task)
    return task_json(task)


@route("/tasks/<int:task_id>/rerun", "POST",
       summary=_l("Run an ended task again as a new task (409 while it runs, or when its "
                  "spec or pool is no longer yours to use)"), role="renter", response=TASK,
       status=201)
def rerun_task_api(task_id):
    task = tasks.get_task_or_404(api_user(), task_id)
    with refusals():
        return task_json(tasks.rerun(task))


@route("/tasks/<int:task_id>", "DELETE",
       summary=_l("Delete an ended task (409 while it runs); its record stays for billing"),
       role="renter")
def delete_task_api(task_id):
    with refusals():
        tasks.delete_task(tasks.get_task_or_404(api_user(), task_id))
