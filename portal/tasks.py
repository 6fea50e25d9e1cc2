"""Training tasks' lifecycle: submit, stop, run again, move off a draining node, delete --
the rules the renter's pages, the JSON API and the scheduler share.

A task is written here in one transaction -- the ``Task``, its ``Subtask`` rows
and one ``pending`` ``Replica`` per replica, each with a "submitted" event
(``write_task``, which notebooks' runs use too) -- and ``tasks_changed`` wakes the
scheduler (``wake``), which moves replicas on through ``starting``, ``running`` and an
ended state and writes ``Task.reason`` while a task waits. The portal makes one
transition itself: a replica that never left ``pending`` is ``stopped`` at once when its
renter asks (compare-and-set on ``state = 'pending'``, so a replica the scheduler has
just taken is left to the scheduler, which sees ``stop_requested``).

What a submission may hold is checked by ``portal.task_input``; what a renter sees is
``portal.task_views``. A refused action raises ``TaskError``.
"""

import json

from flask import abort, current_app, has_app_context
from flask_babel import gettext as _
from peewee import IntegrityError

from portal import images, ledger, run_limits
from portal.db import Prepared, database, insert_row, insert_rows
from portal.models import Replica, ReplicaEvent, ResourceSpec, Subtask, Task, utcnow
from portal.reasons import DRAINED, STOPPED_BY_YOU, SUBMITTED
from portal.signals import tasks_changed
from portal.task_input import TaskError, checked_task
from portal.task_views import ReplicaView, SubtaskView, TaskView, all_ended, derive_state


def create_task(user, name, image, argv, env, pool, subtasks, rerun_of=None, **more):
    """Check everything, then write the task, its subtasks and its pending replicas (each
    with a "submitted" event) in one transaction, and wake the scheduler. ``pool`` and
    each subtask's spec are names; ``subtasks`` is ``[(role, spec name, replicas)]``.
    ``more``: ``max_run_minutes`` (``portal.run_limits``), ``template`` (a TaskTemplate),
    ``algorithm_version`` and ``dataset_version`` (version ids: ``task_input``).
    Raises TaskError with the message of every bad field; nothing is saved then."""
    return submit_task(user, name, image, argv, env, pool, subtasks, rerun_of, **more).task


def submit_task(user, name, image, argv, env, pool, subtasks, rerun_of=None,
                max_run_minutes=None, template=None, algorithm_version=None,
                dataset_version=None):
    """``create_task``, returning the new task's ``TaskView`` (its subtasks, replicas and
    their "submitted" events) made from the rows just written, not read back: what the
    API answers a submission with."""
    checked = run_limits.with_limit(
        lambda: checked_task(user, name, image, argv, env, pool, subtasks, algorithm_version,
                             dataset_version), max_run_minutes, user, pool)
    images.check_usable(user, checked["image"])
    per_hour = sum(spec.spec.price_per_hour * count for _role, spec, count in checked["subtasks"])
    refusal = ledger.start_refusal(user, ledger.minimum_for(per_hour))
    if refusal:
        raise TaskError({None: refusal})
    task = Task(user=user, kind="training", name=checked["name"], image=checked["image"],
                argv=json.dumps(checked["argv"]), env=json.dumps(checked["env"]),
                pool=checked["pool"], state="pending", rerun_of=rerun_of,
                max_run_minutes=checked["max_run_minutes"], template=template,
                algorithm_version=checked["algorithm_version"],
                dataset_version=checked["dataset_version"])
    try:
        with database.atomic():
            view = write_task(task, [(role, spec.spec, count)
                                     for role, spec, count in checked["subtasks"]])
    except IntegrityError:  # a spec deleted since it was checked
        raise TaskError({None: _("A spec of this task no longer exists: reload the page.")}
                        ) from None
    wake(view.task)
    return view


_REPLICA_IDS = Prepared(lambda task_id: (
    Replica.select(Replica.id, Replica.subtask, Replica.index).where(Replica.task == task_id)))


def write_task(task, subtasks):
    """Write ``task`` (a new ``Task``, not saved yet: a training task or a notebook's run),
    its ``subtasks`` (``[(role, ResourceSpec, replicas)]``) and one pending replica per
    replica, each with a "submitted" event, in the caller's transaction, with prepared
    statements. Returns its ``TaskView`` made from the rows written: no reading back."""
    insert_row(task)
    view, now = TaskView(task), utcnow()
    for role, spec, count in subtasks:
        subtask = Subtask(task=task, role=role, spec=spec, count=count)
        insert_row(subtask)
        view.subtasks.append(SubtaskView(subtask, [ReplicaView(Replica(
            task=task, subtask=subtask, index=index, state="pending", created_at=now))
            for index in range(count)]))
    insert_rows([item.replica for item in view.replicas])
    ids = {(subtask_id, index): rid for rid, subtask_id, index in _REPLICA_IDS.rows(task.id)}
    for item in view.replicas:
        item.replica.id = ids[item.replica.subtask_id, item.replica.index]
        item.events.append(ReplicaEvent(replica=item.replica, at=now, state="pending",
                                        reason=SUBMITTED))
    insert_rows([item.events[0] for item in view.replicas])
    return view


def wake(task):
    """Wake the scheduler for ``task``; nothing outside a request (the scheduler itself)."""
    if has_app_context():
        tasks_changed.send(current_app._get_current_object(), task_id=task.id)


def _replica_states(task):
    return [s for (s,) in Replica.select(Replica.state).where(Replica.task == task).tuples()]


def refresh_state(task):
    """Store the task's derived state in ``Task.state`` (the cache lists read); returns it.
    The scheduler calls it too, after it moves a replica."""
    task.state = derive_state(_replica_states(task))
    Task.update(state=task.state).where(Task.id == task.id).execute()
    return task.state


def request_stop(task, reason=STOPPED_BY_YOU):
    """Ask for the task to stop, for ``reason``: the renter's own stop, or Hourglass's
    (``BALANCE_EXHAUSTED``). Pending replicas are stopped here and now; the scheduler
    stops the started ones (SIGTERM, then SIGKILL after a grace) when it sees
    ``stop_requested``, and gives them the same reason. Refused when the task has ended
    already. Wakes the scheduler when called from a request."""
    with database.atomic():
        if all_ended(_replica_states(task)):
            raise TaskError({None: _("This task has ended already.")})
        Task.update(stop_requested=True, stop_reason=reason).where(Task.id == task.id).execute()
        task.stop_requested, task.stop_reason = True, reason
        now, stopped = utcnow(), []
        pending = Replica.select(Replica.id).where(Replica.task == task,
                                                   Replica.state == "pending")
        for (rid,) in pending.tuples():
            changed = (Replica.update(state="stopped", reason=reason)
                       .where(Replica.id == rid, Replica.state == "pending").execute())
            if changed:
                stopped.append({"replica": rid, "at": now, "state": "stopped",
                                "reason": reason})
        if stopped:
            ReplicaEvent.insert_many(stopped).execute()
        refresh_state(task)
    wake(task)


def rerun(task):
    """A new task with the parameters of ``task``, which must have ended; checked again
    (a spec disabled since is refused)."""
    if not all_ended(_replica_states(task)):
        raise TaskError({None: _("Run a task again once it has ended (stop it first).")})
    return _run_again(task)


def move(task):
    """Move ``task`` off a draining node: stop it ("its node is draining") and, in the same
    transaction, submit it again as a new run, which is placed elsewhere (a draining node
    is cordoned). A task's replicas start together, so its replicas on other nodes stop
    too. Returns the new run, or None when it may not run again now (a spec disabled
    since, a balance below the minimum period): then it is only stopped."""
    with database.atomic():
        request_stop(task, DRAINED)
        if task.kind != "training":  # a notebook's renter starts it again
            return None
        try:
            with database.atomic():
                return _run_again(task)
        except TaskError:
            return None


def _run_again(task):
    rows = (Subtask.select(Subtask, ResourceSpec).join(ResourceSpec)
            .where(Subtask.task == task).order_by(Subtask.id))
    return create_task(task.user, task.name, task.image, json.loads(task.argv),
                       json.loads(task.env), task.pool.name,
                       [(s.role, s.spec.name, s.count) for s in rows], rerun_of=task,
                       max_run_minutes=task.max_run_minutes, template=task.template_id,
                       algorithm_version=task.algorithm_version_id,
                       dataset_version=task.dataset_version_id)


def delete_task(task):
    """Hide an ended task from its renter. The rows stay (billing refers to them); the
    scheduler removes the containers."""
    with database.atomic():
        if not all_ended(_replica_states(task)):
            raise TaskError({None: _("Stop the task and wait for it to end before deleting "
                                     "it.")})
        Task.update(deleted=True).where(Task.id == task.id).execute()
        task.deleted = True
    wake(task)


def get_task_or_404(user, task_id):
    """``user``'s training task ``task_id``; another renter's, a deleted one or none at all
    is the same 404 (from ``abort``), so nobody learns what exists."""
    found = None
    if isinstance(task_id, int) and 0 < task_id < 2**63:
        found = Task.get_or_none(Task.id == task_id, Task.user == user, Task.deleted == False,  # noqa: E712
                                 Task.kind == "training")
    if found is None:
        abort(404)
    return found
