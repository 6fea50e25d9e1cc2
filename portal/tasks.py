"""Training tasks: the rules the renter's pages, the JSON API and the scheduler share.

A task is written here in one transaction -- the ``Task``, its ``Subtask`` rows
and one ``pending`` ``Replica`` per replica, each with a "submitted" event --
and ``tasks_changed`` wakes the scheduler, which moves replicas on through
``starting``, ``running`` and an ended state and writes ``Task.reason`` while
a task waits. The portal makes one transition itself: a replica that never
left ``pending`` is ``stopped`` at once when its renter asks (compare-and-set
on ``state = 'pending'``, so a replica the scheduler has just taken is left to
the scheduler, which sees ``stop_requested``).

What is accepted (bad input raises ``TaskError`` naming every field at once):

- name: 1-96 characters, any Unicode and HTML (pages escape it), no control characters.
- image: any syntactically valid image reference (``[registry[:port]/]path[:tag][@digest]``,
  at most 255 characters). It need not be on a node yet: the form offers the images
  discovery found, and a task whose image is missing fails or waits with a reason.
- argv: a non-empty list of strings, never run through a shell (the form's command is one
  argument per line: ``command_lines``); at most 1024 arguments of 4096 characters, 64 KiB
  in all, no NUL. A script under /code is ``["/bin/sh", "/code/run.sh"]``.
- env: ``{KEY: value}`` (or the form's ``KEY=value`` lines), at most 64; keys
  ``[A-Za-z_][A-Za-z0-9_]*``; ``HOURGLASS_*``, ``WORLD_SIZE`` and ``RANK`` are set by
  Hourglass; values 4096 characters, no NUL.
- pool: the name of a pool open to the user (``open_pools``); another pool reads as unknown.
- subtasks: 1-8 of ``(role, spec name, replicas)``; roles ``[a-z][a-z0-9-]{0,31}``, unique;
  replicas 1-64; the spec enabled, and some enabled node of the pool large enough for it
  (Ready or not: a node that is down makes the task wait with a reason, not fail).
"""

import json
import re
from dataclasses import dataclass, field

from flask import abort, current_app, g, has_app_context
from flask_babel import gettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import JOIN, IntegrityError

from portal import ledger, reasons, values
from portal.access import open_pool, open_pools
from portal.capacity import fits, pool_capacities
from portal.db import Prepared, database, insert_row, insert_rows
from portal.models import (
    REPLICA_ENDED,
    CustomResource,
    Node,
    Pool,
    Replica,
    ReplicaEvent,
    ResourceSpec,
    Subtask,
    Task,
    utcnow,
)
from portal.pools import pool_views
from portal.signals import tasks_changed
from portal.specs import spec_view, spec_views

NAME_MAX = 96
IMAGE_MAX = 255
MAX_ARGS, ARG_MAX, ARGV_TOTAL = 1024, 4096, 64 * 1024
MAX_ENV, ENV_VALUE_MAX = 64, 4096
MAX_SUBTASKS, MAX_REPLICAS = 8, 64
ROLE = r"[a-z][a-z0-9-]{0,31}"  # pattern bodies (``portal.values``): the API document's too
ROLE_RE = re.compile(ROLE)
RESERVED_ENV = ("WORLD_SIZE", "RANK")
RESERVED_ENV_PREFIX = "HOURGLASS_"
LINES = re.compile(r"\r\n|\r|\n")
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
IMAGE = (rf"(?:{_HOST}(?:\.{_HOST})*(?::[0-9]+)?/)?{_PART}(?:/{_PART})*"
         r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
         r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
IMAGE_RE = re.compile(IMAGE)

SUBMITTED, STOPPED_BY_YOU = "submitted", "stopped by you"
BALANCE_EXHAUSTED = "balance exhausted"
CULLED = "stopped after being idle"  # a notebook's idle culling (scheduler.culling)
DRAINED = "its node is draining"  # the miner drains a node: its work moves (``move``)
# The reasons the portal stores (in English), shown in the reader's language.
REASONS = {SUBMITTED: _l("submitted"), STOPPED_BY_YOU: _l("stopped by you"),
           BALANCE_EXHAUSTED: _l("balance exhausted"), CULLED: _l("stopped after being idle"),
           DRAINED: _l("its node is draining")}


class TaskError(values.FieldErrors):
    """Bad input or a refused action (``values.FieldErrors``); fields are ``name``,
    ``argv``, ``subtasks[0].spec``..."""


def reason_text(reason):
    """A stored reason in the reader's language: the portal's own, or the scheduler's
    pending reason (``portal.reasons``); other text (e.g. Podman's) as it is."""
    if reason in REASONS:
        return str(REASONS[reason])
    parsed = reasons.loads(reason or "")
    if parsed is None:
        return reason
    if "kind_names" not in g:  # one query per request, however many tasks wait
        g.kind_names = {}
        for name, kind in (CustomResource.select(CustomResource.name, CustomResource.kind)
                           .order_by(CustomResource.id).tuples()):
            g.kind_names.setdefault(kind, name)
    return reasons.render(*parsed, kind_names=g.kind_names, translate=gettext)


# --- states ------------------------------------------------------------------------------


def derive_state(replica_states):
    """A task's (or subtask's) state from its replicas' states.

    ==========================================  =========
    replicas                                    state
    ==========================================  =========
    none                                        pending
    any running                                 running
    else any starting                           starting
    else any pending                            pending
    all ended, any failed                       failed
    all ended, else any lost                    lost
    all ended, else any stopped                 stopped
    all succeeded                               succeeded
    ==========================================  =========
    """
    states = set(replica_states)
    for state in ("running", "starting", "pending", "failed", "lost", "stopped", "succeeded"):
        if state in states:
            return state
    return "pending"


def refresh_state(task):
    """Store the task's derived state in ``Task.state`` (the cache lists read); returns it.
    The scheduler calls it too, after it moves a replica."""
    task.state = derive_state(_replica_states(task))
    Task.update(state=task.state).where(Task.id == task.id).execute()
    return task.state


def _ended(states):
    return all(state in REPLICA_ENDED for state in states)


# --- what a renter sees ------------------------------------------------------------------


@dataclass
class ReplicaView:
    """A replica with its node (``replica.node``, or None) and its transitions, oldest first
    (loaded for one task's page, empty in lists)."""

    replica: Replica
    events: list = field(default_factory=list)


@dataclass
class SubtaskView:
    """A subtask, its spec (``subtask.spec``), how many replicas it asks for (``count``) and
    its replicas (``ReplicaView``) by index."""

    subtask: Subtask
    replicas: list = field(default_factory=list)

    @property
    def count(self):
        return self.subtask.replicas

    @property
    def state(self):
        return derive_state(r.replica.state for r in self.replicas)

    @property
    def cost(self):
        """Micro-units charged so far: the sum of the replicas' ``Replica.charged`` (loaded
        already, no query)."""
        return sum(item.replica.charged for item in self.replicas)


@dataclass
class TaskView:
    """A task with its subtasks and replicas, its state derived from them (not the cache),
    and which of Stop, Run again and Delete apply."""

    task: Task
    subtasks: list = field(default_factory=list)

    def __post_init__(self):
        self.argv = json.loads(self.task.argv)
        self.env = json.loads(self.task.env)

    @property
    def replicas(self):
        return [replica for subtask in self.subtasks for replica in subtask.replicas]

    @property
    def state(self):
        return derive_state(r.replica.state for r in self.replicas)

    @property
    def ended(self):
        return _ended(r.replica.state for r in self.replicas)

    @property
    def cost(self):
        """Micro-units charged so far, live while it runs (``SubtaskView.cost``)."""
        return sum(subtask.cost for subtask in self.subtasks)

    @property
    def stopping(self):
        return self.task.stop_requested and not self.ended

    @property
    def can_stop(self):
        return not self.ended and not self.task.stop_requested

    @property
    def runs_again(self):
        """The ids of the tasks that run this one again (its renter's, or a move off a
        draining node), oldest first; one query."""
        return [tid for (tid,) in Task.select(Task.id).where(
            (Task.rerun_of == self.task.id) & (Task.deleted == False)  # noqa: E712
        ).order_by(Task.id).tuples()]


def _views(tasks, events):
    """TaskViews of ``tasks`` in their order: three queries (four with ``events``)."""
    tasks = list(tasks)
    views = {task.id: TaskView(task) for task in tasks}
    subtasks, replicas = {}, {}
    query = (Subtask.select(Subtask, ResourceSpec).join(ResourceSpec)
             .where(Subtask.task.in_(list(views))).order_by(Subtask.id))
    for subtask in query:
        subtasks[subtask.id] = SubtaskView(subtask)
        views[subtask.task_id].subtasks.append(subtasks[subtask.id])
    query = (Replica.select(Replica, Node).join(Node, JOIN.LEFT_OUTER)
             .where(Replica.task.in_(list(views))).order_by(Replica.index))
    for replica in query:
        replicas[replica.id] = ReplicaView(replica)
        subtasks[replica.subtask_id].replicas.append(replicas[replica.id])
    if events and replicas:
        query = (ReplicaEvent.select().where(ReplicaEvent.replica.in_(list(replicas)))
                 .order_by(ReplicaEvent.at, ReplicaEvent.id))
        for event in query:
            replicas[event.replica_id].events.append(event)
    return [views[task.id] for task in tasks]


def task_view(task):
    """One task with everything its page shows, transitions included."""
    return _views([task], events=True)[0]


def task_views(user):
    """``user``'s training tasks that are not deleted, newest first, without transitions."""
    tasks = (Task.select(Task, Pool).join(Pool)
             .where(Task.user == user, Task.deleted == False, Task.kind == "training")  # noqa: E712
             .order_by(Task.submitted_at.desc(), Task.id.desc()))
    return _views(tasks, events=False)


def pool_images(pool_view):
    """The image names discovery found on the nodes of a pool (``PoolView``), sorted."""
    names = set()
    for item in pool_view.nodes:
        try:
            found = json.loads(item.node.images or "[]")
        except ValueError:
            continue
        names.update(name for name in found if isinstance(name, str))
    return sorted(names)


# --- checking what was typed -------------------------------------------------------------


def _name(value):
    return values.checked(TaskError, "name", values.name, value, NAME_MAX)


def _image(value):
    image = value.strip() if isinstance(value, str) else ""
    if not image:
        raise TaskError({"image": _("Enter an image, e.g. localhost/train:latest.")})
    if len(image) > IMAGE_MAX or not IMAGE_RE.fullmatch(image):
        raise TaskError({"image": _("Not an image reference: use [registry/]name[:tag], e.g. "
                                    "localhost/train:latest (at most %(n)d characters).",
                                    n=IMAGE_MAX)})
    return image


def _argv(value):
    if not isinstance(value, list) or not all(isinstance(arg, str) for arg in value):
        raise TaskError({"argv": _("The command is a list of strings.")})
    if not value or not value[0]:
        raise TaskError({"argv": _("Enter the command to run, e.g. python3 then /code/train.py "
                                   "on the next line.")})
    if len(value) > MAX_ARGS:
        raise TaskError({"argv": _("At most %(n)d arguments.", n=MAX_ARGS)})
    if any(len(arg) > ARG_MAX for arg in value) or sum(map(len, value)) > ARGV_TOTAL:
        raise TaskError({"argv": _("An argument may hold %(n)d characters, the command 64 KiB "
                                   "in all.", n=ARG_MAX)})
    if any("\x00" in arg for arg in value):
        raise TaskError({"argv": _("An argument cannot hold a NUL character.")})
    return list(value)


def command_lines(text):
    """The form's command: one argument per line, each stripped, blank lines skipped."""
    return [line.strip() for line in LINES.split(text or "") if line.strip()]


def _env_lines(text):
    env = {}
    for line in LINES.split(text):
        if not line.strip():
            continue
        key, sep, value = line.strip().partition("=")
        if not sep:
            raise TaskError({"env": _("Write each variable as NAME=value on a line of its "
                                      "own.")})
        if key.strip() in env:
            raise TaskError({"env": _("%(key)s is set twice.", key=key.strip()[:64])})
        env[key.strip()] = value.strip()
    return env


def _env(value):
    if isinstance(value, str):
        value = _env_lines(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TaskError({"env": _("The environment maps names to strings.")})
    if len(value) > MAX_ENV:
        raise TaskError({"env": _("At most %(n)d variables.", n=MAX_ENV)})
    for key, item in value.items():
        values.checked(TaskError, "env", values.env_name, key)
        if key.startswith(RESERVED_ENV_PREFIX) or key in RESERVED_ENV:
            raise TaskError({"env": _("%(key)s is set by Hourglass (so are HOURGLASS_*, "
                                      "WORLD_SIZE and RANK).", key=key)})
        if len(item) > ENV_VALUE_MAX or "\x00" in item:
            raise TaskError({"env": _("The value of %(key)s is longer than %(n)d characters "
                                      "or holds a NUL.", key=key, n=ENV_VALUE_MAX)})
    return dict(value)


def _pool(pools, value):
    for view in pools:
        if view.pool.name == value:
            return view
    raise TaskError({"pool": _("There is no pool '%(name)s' open to you.",
                               name=str(value)[:NAME_MAX])})


def _replicas(value, where):
    return values.checked(TaskError, where, values.whole_number, value, 1, MAX_REPLICAS,
                          message=_("Replicas: a whole number from 1 to %(n)d.", n=MAX_REPLICAS))


def _fits_pool(spec, pool):
    return any(fits(spec.needs, item.capacity) for item in pool.nodes if item.node.enabled)


def usable_specs(pools, specs):
    """The ``SpecView``s a renter may pick: enabled, and some enabled node of one of their
    ``pools`` (``open_pools``) is large enough, Ready or not."""
    return [view for view in specs
            if view.spec.enabled and any(_fits_pool(view, pool) for pool in pools)]


def _subtasks(value, pool, pools, specs):
    """``[(role, SpecView, replicas)]``; errors of every row are raised together. A spec
    that fits none of the user's ``pools`` reads as unknown, like a disabled one; ``pool``
    None (not a valid one) skips the check that the spec fits it."""
    if not isinstance(value, list | tuple) or not value:
        raise TaskError({"subtasks": _("Add at least one subtask: a role, a spec and a "
                                       "number of replicas.")})
    if len(value) > MAX_SUBTASKS:
        raise TaskError({"subtasks": _("At most %(n)d subtasks.", n=MAX_SUBTASKS)})
    usable = {view.spec.name: view for view in usable_specs(pools, specs)}
    errors, rows, roles = {}, [], set()
    for i, (role, spec_name, replicas) in enumerate(value):
        at = f"subtasks[{i}]"
        if not isinstance(role, str) or not ROLE_RE.fullmatch(role):
            errors[f"{at}.role"] = _("A role is 1-32 lowercase letters, digits and '-', "
                                     "starting with a letter, e.g. worker.")
        elif role in roles:
            errors[f"{at}.role"] = _("The role '%(role)s' is used twice.", role=role)
        roles.add(role)
        spec = usable.get(spec_name) if isinstance(spec_name, str) else None
        if not spec_name:
            errors[f"{at}.spec"] = _("Choose a spec.")
        elif spec is None:
            errors[f"{at}.spec"] = _("There is no spec '%(name)s' you may use.",
                                     name=str(spec_name)[:NAME_MAX])
        elif pool is not None and not _fits_pool(spec, pool):
            errors[f"{at}.spec"] = _("No node of pool '%(pool)s' is large enough for "
                                     "'%(name)s'.", pool=pool.pool.name, name=spec_name)
        try:
            rows.append((role, spec, _replicas(replicas, f"{at}.replicas")))
        except TaskError as exc:
            errors.update(exc.errors)
    if errors:
        raise TaskError(errors)
    return rows


# --- what a renter does ------------------------------------------------------------------


def create_task(user, name, image, argv, env, pool, subtasks, rerun_of=None):
    """Check everything, then write the task, its subtasks and its pending replicas (each
    with a "submitted" event) in one transaction, and wake the scheduler. ``pool`` and
    each subtask's spec are names; ``subtasks`` is ``[(role, spec name, replicas)]``.
    Raises TaskError with the message of every bad field; nothing is saved then."""
    return submit_task(user, name, image, argv, env, pool, subtasks, rerun_of).task


def submit_task(user, name, image, argv, env, pool, subtasks, rerun_of=None):
    """``create_task``, returning the new task's ``TaskView`` (its subtasks, replicas and
    their "submitted" events) made from the rows just written, not read back: what the
    API answers a submission with."""
    checked = _checked(user, name, image, argv, env, pool, subtasks)
    per_hour = sum(spec.spec.price_per_hour * count for _role, spec, count in checked["subtasks"])
    refusal = ledger.start_refusal(user, ledger.minimum_for(per_hour))
    if refusal:
        raise TaskError({None: refusal})
    try:
        with database.atomic():
            view = _write(user, checked, rerun_of)
    except IntegrityError:  # a spec deleted since it was checked
        raise TaskError({None: _("A spec of this task no longer exists: reload the page.")}
                        ) from None
    _wake(view.task)
    return view


def _checked(user, name, image, argv, env, pool, subtasks):
    """Every field checked: ``{"name", "image", "argv", "env", "pool" (a Pool), "subtasks"
    ([(role, SpecView, replicas)])}``, or TaskError with every message.

    Most submissions are right, and ``_accepted`` proves that with the few rows it needs.
    Anything else goes the long way, over every pool and spec (``_pool``, ``_subtasks``),
    so a refusal and its words are what they always were."""
    errors, checked = {}, {}
    checks = {"name": lambda: _name(name), "image": lambda: _image(image),
              "argv": lambda: _argv(argv), "env": lambda: _env(env)}
    for key, check in checks.items():
        try:
            checked[key] = check()
        except TaskError as exc:
            errors.update(exc.errors)
    accepted = None if errors else _accepted(user, pool, subtasks)
    if accepted is not None:
        checked["pool"], checked["subtasks"] = accepted
        return checked
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    try:
        checked["pool"] = _pool(pools, pool)
    except TaskError as exc:
        errors.update(exc.errors)
    try:
        checked["subtasks"] = _subtasks(subtasks, checked.get("pool"), pools, specs)
    except TaskError as exc:
        errors.update(exc.errors)
    if errors:
        raise TaskError(errors)
    checked["pool"] = checked["pool"].pool
    return checked


def _accepted(user, pool_name, subtasks):
    """``(Pool, [(role, SpecView, replicas)])`` when ``_subtasks`` would accept the pool
    and the subtasks, or None for "not sure": a few queries instead of every pool and spec.

    The long way accepts a subtask whose spec is enabled and fits an enabled node of the
    chosen pool (that it fits one of the user's pools follows: the chosen one is theirs),
    so that is all asked here: the pool by name if open to the user, the named specs and
    the capacities of the pool's enabled nodes."""
    if not isinstance(subtasks, list | tuple) or not 0 < len(subtasks) <= MAX_SUBTASKS:
        return None
    rows, roles = [], set()
    for row in subtasks:
        try:
            role, spec_name, replicas = row
            replicas = values.whole_number(replicas, 1, MAX_REPLICAS)  # as ``_replicas``
        except (TypeError, ValueError):  # ValueProblem is a ValueError
            return None
        if not (isinstance(role, str) and ROLE_RE.fullmatch(role) and role not in roles
                and isinstance(spec_name, str) and spec_name):
            return None
        roles.add(role)
        rows.append((role, spec_name, replicas))
    pool = open_pool(user, pool_name)
    if pool is None:
        return None
    specs = {name: spec_view(name) for name in {name for _role, name, _count in rows}}
    capacities = pool_capacities(pool)
    checked = []
    for role, spec_name, replicas in rows:
        spec = specs.get(spec_name)
        if spec is None or not spec.spec.enabled or not any(
                fits(spec.needs, capacity) for capacity in capacities):
            return None
        checked.append((role, spec, replicas))
    return pool, checked


_REPLICA_IDS = Prepared(lambda task_id: (
    Replica.select(Replica.id, Replica.subtask, Replica.index).where(Replica.task == task_id)))


def _write(user, checked, rerun_of):
    """The rows of a checked task, written (in the caller's transaction) with prepared
    statements, and its ``TaskView`` made from them: no reading back."""
    task = Task(user=user, kind="training", name=checked["name"], image=checked["image"],
                argv=json.dumps(checked["argv"]), env=json.dumps(checked["env"]),
                pool=checked["pool"], state="pending", rerun_of=rerun_of)
    insert_row(task)
    view, now = TaskView(task), utcnow()
    for role, spec, count in checked["subtasks"]:
        subtask = Subtask(task=task, role=role, spec=spec.spec, replicas=count)
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


def _wake(task):
    """Wake the scheduler for ``task``; nothing outside a request (the scheduler itself)."""
    if has_app_context():
        tasks_changed.send(current_app._get_current_object(), task_id=task.id)


def _replica_states(task):
    return [s for (s,) in Replica.select(Replica.state).where(Replica.task == task).tuples()]


def request_stop(task, reason=STOPPED_BY_YOU):
    """Ask for the task to stop, for ``reason``: the renter's own stop, or Hourglass's
    (``BALANCE_EXHAUSTED``). Pending replicas are stopped here and now; the scheduler
    stops the started ones (SIGTERM, then SIGKILL after a grace) when it sees
    ``stop_requested``, and gives them the same reason. Refused when the task has ended
    already. Wakes the scheduler when called from a request."""
    with database.atomic():
        if _ended(_replica_states(task)):
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
    _wake(task)


def rerun(task):
    """A new task with the parameters of ``task``, which must have ended; checked again
    (a spec disabled since is refused)."""
    if not _ended(_replica_states(task)):
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
                       [(s.role, s.spec.name, s.replicas) for s in rows], rerun_of=task)


def delete_task(task):
    """Hide an ended task from its renter. The rows stay (billing refers to them); the
    scheduler removes the containers."""
    with database.atomic():
        if not _ended(_replica_states(task)):
            raise TaskError({None: _("Stop the task and wait for it to end before deleting "
                                     "it.")})
        Task.update(deleted=True).where(Task.id == task.id).execute()
        task.deleted = True
    _wake(task)


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
