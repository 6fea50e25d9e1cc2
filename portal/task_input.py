"""What a task may hold, checked as typed: a submission's fields, from the renter's form or
the JSON API, turned into the values ``portal.tasks`` writes, or ``TaskError`` naming every
bad field at once. Notebooks (``portal.notebooks``) check their name, image, pool and spec
here too.

What is accepted:

- name: 1-96 characters, any Unicode and HTML (pages escape it), no control characters.
- image: any syntactically valid image reference (``[registry[:port]/]path[:tag][@digest]``,
  at most 255 characters). It need not be on a node yet: the form offers the images
  discovery found (``pool_images``), and a task whose image is missing fails or waits with
  a reason.
- argv: a non-empty list of strings, never run through a shell (the form's command is one
  argument per line: ``command_lines``); at most 1024 arguments of 4096 characters, 64 KiB
  in all, no NUL. A script under /code is ``["/bin/sh", "/code/run.sh"]``.
- env: ``{KEY: value}`` (or the form's ``KEY=value`` lines), at most 64; keys
  ``[A-Za-z_][A-Za-z0-9_]*``; ``HOURGLASS_*``, ``WORLD_SIZE`` and ``RANK`` are set by
  Hourglass; values 4096 characters, no NUL.
- algorithm_version, dataset_version: ids of versions the user may use (their own
  algorithms; their own datasets and those shared with their groups), or None.
- pool: the name of a pool open to the user (``open_pools``); another pool reads as unknown.
- subtasks: 1-8 of ``(role, spec name, replicas)``; roles ``[a-z][a-z0-9-]{0,31}``, unique;
  replicas 1-64; the spec enabled, and some enabled node of the pool large enough for it
  (Ready or not: a node that is down makes the task wait with a reason, not fail).
"""

import json
import re

from flask_babel import gettext as _

from portal import algorithms, datasets, values, versions
from portal.access import open_pool, open_pools
from portal.capacity import fits, pool_capacities
from portal.pools import pool_views
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


class TaskError(values.FieldErrors):
    """Bad input or a refused action (``values.FieldErrors``); fields are ``name``,
    ``argv``, ``subtasks[0].spec``..."""


def check_fields(checks, checked, errors):
    """Run ``checks`` (``{field: callable}``) in their order: each value goes into
    ``checked`` (so a later check may read an earlier one's), the messages of each
    ``TaskError`` into ``errors``, so that every bad field is named at once."""
    for key, check in checks.items():
        try:
            checked[key] = check()
        except TaskError as exc:
            errors.update(exc.errors)


# --- one field ---------------------------------------------------------------------------


def check_name(value):
    """The name of a task or notebook, checked (``values.name``)."""
    return values.checked(TaskError, "name", values.name, value, NAME_MAX)


def check_image(value):
    """An image reference, stripped and checked (``IMAGE``)."""
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


def check_versions(user, algorithm_version, dataset_version):
    """``{"algorithm_version", "dataset_version"}``: the versions (rows, or None) ``user``
    picked, by id; TaskError naming each one that is not theirs to use."""
    errors, checked = {}, {}
    check_fields({
        "algorithm_version": lambda: versions.pick(
            algorithm_version, lambda vid: algorithms.usable_version(user, vid), TaskError,
            "algorithm_version", _("Choose a version of one of your algorithms.")),
        "dataset_version": lambda: versions.pick(
            dataset_version, lambda vid: datasets.usable_version(user, vid), TaskError,
            "dataset_version", _("Choose a version of a dataset you may use."))},
        checked, errors)
    if errors:
        raise TaskError(errors)
    return checked


def check_pool(pools, value):
    """The ``PoolView`` named ``value`` among ``pools`` (those open to the user,
    ``open_pools``); any other name reads as unknown."""
    for view in pools:
        if view.pool.name == value:
            return view
    raise TaskError({"pool": _("There is no pool '%(name)s' open to you.",
                               name=str(value)[:NAME_MAX])})


# --- subtasks and the specs they may use -------------------------------------------------


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


def pool_images(pool_view):
    """The image names discovery found on the nodes of a pool (``PoolView``), sorted: what
    the form offers."""
    names = set()
    for item in pool_view.nodes:
        try:
            found = json.loads(item.node.images or "[]")
        except ValueError:
            continue
        names.update(name for name in found if isinstance(name, str))
    return sorted(names)


def check_subtasks(value, pool, pools, specs):
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


# --- a whole submission ------------------------------------------------------------------


def checked_task(user, name, image, argv, env, pool, subtasks, algorithm_version=None,
                 dataset_version=None):
    """Every field of ``user``'s submission checked: ``{"name", "image", "argv", "env",
    "algorithm_version", "dataset_version" (rows or None), "pool" (a Pool), "subtasks"
    ([(role, SpecView, replicas)])}``, or TaskError with every message.

    Most submissions are right, and ``_accepted`` proves that with the few rows it needs.
    Anything else goes the long way, over every pool and spec (``check_pool``,
    ``check_subtasks``), so a refusal and its words are what they always were."""
    errors, checked = {}, {}
    check_fields({"name": lambda: check_name(name), "image": lambda: check_image(image),
                  "argv": lambda: _argv(argv), "env": lambda: _env(env),
                  "versions": lambda: check_versions(user, algorithm_version, dataset_version)},
                 checked, errors)
    checked.update(checked.pop("versions", {}))
    accepted = None if errors else _accepted(user, pool, subtasks)
    if accepted is not None:
        checked["pool"], checked["subtasks"] = accepted
        return checked
    specs = spec_views()
    pools = open_pools(user, pool_views(specs=specs))
    check_fields({"pool": lambda: check_pool(pools, pool),
                  "subtasks": lambda: check_subtasks(subtasks, checked.get("pool"), pools,
                                                     specs)}, checked, errors)
    if errors:
        raise TaskError(errors)
    checked["pool"] = checked["pool"].pool
    return checked


def _accepted(user, pool_name, subtasks):
    """``(Pool, [(role, SpecView, replicas)])`` when ``check_subtasks`` would accept the
    pool and the subtasks, or None for "not sure": a few queries instead of every pool and
    spec.

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
