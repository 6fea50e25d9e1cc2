"""Task templates: a training task's whole definition saved under a name, to start again in
one click or as a prefilled form, and shared with the renter's groups.

A definition (``TaskTemplate.definition``, JSON) holds what a submission does:
``name`` (the task's), ``image``, ``argv``, ``env``, ``pool`` (its name), ``subtasks``
(``[{"role", "spec", "replicas"}]``, the spec by name), ``algorithm_version`` and
``dataset_version`` (ids or null) and ``max_run_minutes`` (or null). It is checked like a
submission when saved (``checked_definition``) and again when run, so a spec or pool no
longer usable gives the submission's own refusal.

Who sees a template: its owner, and the members of a group it is shared with (marked as
shared, by its owner); they may run it (the task is theirs), not change, share or delete
it. Anyone else gets a 404, as for a template that does not exist.
"""

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

from flask import abort
from flask_babel import gettext as _
from peewee import IntegrityError

from portal import images, references, run_limits, tasks, values
from portal.access import group_ids_of
from portal.db import database
from portal.models import Group, Membership, Subtask, TaskTemplate, TemplateShare, User, utcnow
from portal.task_input import TaskError, checked_task

NAME_MAX, DESCRIPTION_MAX = 96, 256
VERSION_KEYS = ("algorithm_version", "dataset_version")


class TemplateError(TaskError):
    """A refused template (``values.FieldErrors``): fields ``template_name``,
    ``description``, or a submission's (``portal.task_input``)."""


@dataclass
class TemplateView:
    """A template as ``user`` sees it: ``mine`` (theirs to change), its owner, the groups
    it is shared with (the owner's view only) and its ``definition`` (a dict)."""

    template: TaskTemplate
    mine: bool
    groups: list = field(default_factory=list)

    @property
    def owner(self):
        return self.template.user.display_name or self.template.user.name

    @property
    def definition(self):
        return json.loads(self.template.definition)


# --- definitions -------------------------------------------------------------------------


def checked_definition(user, fields):
    """``fields`` (a submission's: name, image, argv, env, pool, subtasks as
    ``[(role, spec name, replicas)]``, max_run_minutes, algorithm_version,
    dataset_version) checked as ``user``'s submission would be: the definition to store,
    or TemplateError naming every bad field."""
    try:
        checked = run_limits.with_limit(
            lambda: checked_task(user, fields.get("name"), fields.get("image"),
                                 fields.get("argv"), fields.get("env") or {},
                                 fields.get("pool"), fields.get("subtasks"),
                                 *(fields.get(key) for key in VERSION_KEYS)),
            fields.get("max_run_minutes"), user, fields.get("pool"))
        images.check_usable(user, checked["image"])
    except TaskError as exc:
        raise TemplateError(exc.errors) from None
    versions = {key: checked[key].id if checked[key] else None for key in VERSION_KEYS}
    return {"name": checked["name"], "image": checked["image"], "argv": checked["argv"],
            "env": checked["env"], "pool": checked["pool"].name,
            "subtasks": [{"role": role, "spec": spec.spec.name, "replicas": count}
                         for role, spec, count in checked["subtasks"]],
            "max_run_minutes": checked["max_run_minutes"], **versions}


def task_definition(task):
    """The definition of an existing task (``Task``), as it was submitted."""
    rows = Subtask.select().where(Subtask.task == task).order_by(Subtask.id)
    return {"name": task.name, "image": task.image, "argv": json.loads(task.argv),
            "env": json.loads(task.env), "pool": task.pool.name,
            "subtasks": [{"role": s.role, "spec": s.spec.name, "replicas": s.count}
                         for s in rows],
            "max_run_minutes": task.max_run_minutes,
            "algorithm_version": task.algorithm_version_id,
            "dataset_version": task.dataset_version_id}


def submission(definition, overrides=None):
    """A definition (with ``overrides``' keys replacing its own) as a submission's fields:
    ``subtasks`` as ``[(role, spec, replicas)]``."""
    fields = {**definition, **(overrides or {})}
    fields["subtasks"] = [(s.get("role"), s.get("spec"), s.get("replicas"))
                          if isinstance(s, dict) else s for s in fields.get("subtasks") or []]
    return fields


def form_data(definition, rows, template=None):
    """A definition as the new task form's data (``portal.renter.tasks.TaskForm``), with at
    least ``rows`` subtask rows; ``template``: the template it comes from."""
    subtasks = [SimpleNamespace(role=s["role"], spec=s["spec"], replicas=str(s["replicas"]))
                for s in definition["subtasks"]]
    subtasks += [SimpleNamespace(role="", spec="", replicas="1")] * (rows - len(subtasks))
    shown = {key: "" if definition.get(key) is None else str(definition[key])
             for key in ("max_run_minutes", *VERSION_KEYS)}
    return {"name": definition["name"], "image": definition["image"],
            "command": "\n".join(definition["argv"]),
            "env": "\n".join(f"{key}={value}" for key, value in definition["env"].items()),
            "pool": definition["pool"], "subtasks": subtasks,
            "template": str(template.id) if template else "", **shown}


# --- templates ---------------------------------------------------------------------------


def _checked_names(name, description):
    errors, out = {}, {}
    for key, check in (("template_name", lambda: values.name(name, NAME_MAX)),
                       ("description", lambda: values.text(description, DESCRIPTION_MAX))):
        try:
            out[key] = check()
        except values.ValueProblem as exc:
            errors[key] = str(exc)
    return out, errors


def save_template(user, name, description, fields, template=None):
    """Create ``user``'s template (or change ``template``, theirs) named ``name`` from a
    submission's ``fields`` (``checked_definition``). Every bad field is raised at once;
    a name ``user`` has already used is refused."""
    names, errors = _checked_names(name, description)
    if "template_name" in names and _name_taken(user, names["template_name"], template):
        errors["template_name"] = _taken(names["template_name"])
    try:
        definition = checked_definition(user, fields)
    except TaskError as exc:
        errors.update(exc.errors)
    if errors:
        raise TemplateError(errors)
    row = template or TaskTemplate(user=user)
    row.name, row.description = names["template_name"], names["description"]
    row.definition, row.updated_at = json.dumps(definition), utcnow()
    try:
        with database.atomic():
            row.save()
    except IntegrityError:  # saved meanwhile under the same name
        raise TemplateError({"template_name": _taken(row.name)}) from None
    return row


def _taken(name):
    return _("You have a template named '%(name)s' already.", name=name)


def _name_taken(user, name, template):
    same = TaskTemplate.select().where(TaskTemplate.user == user, TaskTemplate.name == name)
    if template is not None:
        same = same.where(TaskTemplate.id != template.id)
    return same.exists()


def save_task_as_template(user, task, name, description=""):
    """Save ``task`` (``user``'s) as a new template named ``name``."""
    return save_template(user, name, description, submission(task_definition(task)))


def delete_template(template):
    """Delete a template; tasks started from it keep running and forget it."""
    references.delete_unused(template)


def sharable_groups(user):
    """The groups ``user`` is in: those they may share a template with."""
    return list(Group.select().join(Membership).where(Membership.user == user)
                .order_by(Group.name))


def share_template(template, group_ids):
    """Share ``template`` with exactly the groups with these ids, each one its owner is in
    (another is refused)."""
    mine = {group.id: group for group in sharable_groups(template.user)}
    if any(gid not in mine for gid in group_ids):
        raise TemplateError({"groups": _("Share only with groups you are in.")})
    with database.atomic():
        TemplateShare.delete().where(TemplateShare.template == template).execute()
        if group_ids:
            TemplateShare.insert_many([{"template": template, "group": gid}
                                       for gid in set(group_ids)]).execute()


def _shared_groups(template_ids):
    shared = {}
    for share in (TemplateShare.select(TemplateShare, Group).join(Group)
                  .where(TemplateShare.template.in_(template_ids)).order_by(Group.name)):
        shared.setdefault(share.template_id, []).append(share.group)
    return shared


def template_views(user):
    """The templates ``user`` sees: their own, then those shared with one of their groups,
    each by name."""
    groups = group_ids_of(user)
    shared = TemplateShare.select(TemplateShare.template).where(TemplateShare.group.in_(
        list(groups)))
    rows = list(TaskTemplate.select(TaskTemplate, User).join(User)
                .where((TaskTemplate.user == user) | TaskTemplate.id.in_(shared))
                .order_by(TaskTemplate.name, TaskTemplate.id))
    shares = _shared_groups([row.id for row in rows if row.user_id == user.id])
    views = [TemplateView(row, row.user_id == user.id, shares.get(row.id, [])) for row in rows]
    return sorted(views, key=lambda view: not view.mine)


def get_template_or_404(user, template_id, own=False):
    """The ``TemplateView`` of template ``template_id`` when ``user`` owns it or (unless
    ``own``) a group of theirs has it shared; anything else is a 404 (``abort``)."""
    found = None
    if isinstance(template_id, int) and 0 < template_id < 2**63:
        found = TaskTemplate.get_or_none(TaskTemplate.id == template_id)
    if found is not None and found.user_id == user.id:
        return TemplateView(found, True, _shared_groups([found.id]).get(found.id, []))
    if found is not None and not own and TemplateShare.select().where(
            TemplateShare.template == found,
            TemplateShare.group.in_(list(group_ids_of(user)))).exists():
        return TemplateView(found, False)
    abort(404)


def run_template(user, template, overrides=None):
    """Submit ``template``'s definition (``overrides`` replacing some fields) as a new task of
    ``user``'s, checked like any submission; returns its ``TaskView``."""
    fields = submission(json.loads(template.definition), overrides)
    return tasks.submit_task(user, fields.get("name"), fields.get("image"), fields.get("argv"),
                             fields.get("env") or {}, fields.get("pool"), fields["subtasks"],
                             max_run_minutes=fields.get("max_run_minutes"),
                             template=template,
                             **{key: fields.get(key) for key in VERSION_KEYS})
