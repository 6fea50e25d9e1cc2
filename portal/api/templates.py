"""Task templates for renters: list, read, create, change, delete, run, share.

The twin of the renter's templates pages, through the same rules
(``portal.task_templates``). A template's ``definition`` holds a task's fields as
``POST /tasks`` takes them, plus the algorithm and dataset versions. Templates shared with a
group of the caller's are listed and may be run (``mine`` false), not changed; any other,
and a missing one, are the same 404. A refused field of the definition is named
``definition.<field>``.
"""

from flask_babel import lazy_gettext as _l

from portal import task_templates, users
from portal.api.auth import api_user
from portal.api.errors import refused
from portal.api.registry import route
from portal.api.schema import Array, Boolean, Integer, Name, Object, Record, String, iso
from portal.api.tasks import MAX_RUN, NEW_TASK, TASK, task_json
from portal.models import Group
from portal.task_input import TaskError

VERSION = Integer(_l("A version's id; null: none"), nullable=True, minimum=1, maximum=2**63 - 1)
_DEFINITION_FIELDS = {**NEW_TASK.fields, "max_run_minutes": MAX_RUN,
                      "algorithm_version": VERSION, "dataset_version": VERSION}
DEFINITION = Object(_DEFINITION_FIELDS, required=NEW_TASK.required, name="TemplateDefinition",
                    description=_l("A task's fields, as POST /tasks takes them"))

SAVED = Record(dict(_DEFINITION_FIELDS), name="SavedDefinition")
TEMPLATE = Record({
    "id": Integer(),
    "definition": SAVED,
    "name": String(),
    "owner": String(_l("Who made it")),
    "mine": Boolean(_l("Yours to change; false: shared with a group of yours")),
    "shared_with": Array(String(), _l("Your own templates: the groups it is shared with")),
    "description": String(),
    "created_at": String(format="date-time"),
    "updated_at": String(format="date-time"),
}, name="Template")

_FIELDS = {
    "name": Name(task_templates.NAME_MAX, _l("Unique among your templates (taken: 409)")),
    "description": String(max_length=task_templates.DESCRIPTION_MAX),
    "definition": DEFINITION,
}
NEW_TEMPLATE = Object(_FIELDS, required=("name", "definition"), name="NewTemplate")
TEMPLATE_CHANGE = Object(_FIELDS, name="TemplateChange",
                         description=_l("Any of the fields; the others stay as they are"))
SHARE = Object({
    "groups": Array(String(min_length=2, max_length=32, pattern=users.NAME_RE.pattern,
                           rule=_l("a group name")),
                    _l("Names of your groups to share it with (another: 409); replaces the "
                       "old set"), max_items=100),
}, required=("groups",), name="TemplateShare")


OVERRIDES = Object(_DEFINITION_FIELDS, name="TemplateOverrides",
                   description=_l("Fields that replace the template's for this run"))


def _json(view):
    template = view.template
    definition = {key: None for key in ("max_run_minutes", *task_templates.VERSION_KEYS)}
    definition.update(view.definition)
    return {"id": template.id, "name": template.name, "description": template.description,
            "mine": view.mine, "owner": view.owner,
            "shared_with": [group.name for group in view.groups],
            "definition": definition, "created_at": iso(template.created_at),
            "updated_at": iso(template.updated_at)}


def _renamed(key):
    if key == "template_name":
        return "name"
    return key if key in ("description", "groups") else f"definition.{key}"


def _refusing(call):
    """``call()``, a refusal of the rules (TaskError) as a 409 naming the body's fields."""
    try:
        return call()
    except TaskError as exc:
        raise refused(str(exc), {_renamed(key): message
                                 for key, message in exc.errors.items() if key}) from None


def _save(body, template=None):
    user = api_user()
    old = (_json(task_templates.TemplateView(template, True))
           if template else {"description": "", "definition": {}})
    definition = body.get("definition", old["definition"])
    saved = _refusing(lambda: task_templates.save_template(
        user, body.get("name", template.name if template else None),
        body.get("description", old["description"]),
        task_templates.submission(definition), template))
    return _json(task_templates.get_template_or_404(user, saved.id))


@route("/templates", summary=_l("Your task templates, and those shared with your groups"),
       role="renter", response=Array(TEMPLATE))
def list_templates():
    return [_json(view) for view in task_templates.template_views(api_user())]


@route("/templates/<int:template_id>", summary=_l("One of your templates, or one shared "
                                                  "with you"), role="renter",
       response=TEMPLATE)
def get_template_api(template_id):
    return _json(task_templates.get_template_or_404(api_user(), template_id))


@route("/templates", "POST", summary=_l("Save a task template (its definition is checked as "
                                        "a submission)"), role="renter", body=NEW_TEMPLATE,
       response=TEMPLATE, status=201)
def create_template_api(body):
    return _save(body)


@route("/templates/<int:template_id>", "PATCH", summary=_l("Change one of your templates"),
       role="renter", body=TEMPLATE_CHANGE, response=TEMPLATE)
def update_template_api(template_id, body):
    view = task_templates.get_template_or_404(api_user(), template_id, own=True)
    return _save(body, view.template)


@route("/templates/<int:template_id>", "DELETE", summary=_l("Delete one of your templates; "
                                                            "its tasks are kept"),
       role="renter")
def delete_template_api(template_id):
    task_templates.delete_template(
        task_templates.get_template_or_404(api_user(), template_id, own=True).template)


@route("/templates/<int:template_id>/run", "POST",
       summary=_l("Start a task of yours from a template, some fields replaced (409 when it "
                  "is refused as any submission would be)"), role="renter", body=OVERRIDES,
       response=TASK, status=201)
def run_template_api(template_id, body):
    user = api_user()
    view = task_templates.get_template_or_404(user, template_id)
    run = _refusing(lambda: task_templates.run_template(user, view.template, body))
    return task_json(run.task)


@route("/templates/<int:template_id>/share", "PUT",
       summary=_l("Share one of your templates with exactly these groups of yours"),
       role="renter", body=SHARE, response=TEMPLATE)
def share_template_api(template_id, body):
    user = api_user()
    view = task_templates.get_template_or_404(user, template_id, own=True)
    ids = dict(Group.select(Group.name, Group.id).where(Group.name.in_(body["groups"]))
               .tuples())
    # an unknown name stands as id 0, which no group of the owner's has: refused
    _refusing(lambda: task_templates.share_template(
        view.template, [ids.get(name, 0) for name in body["groups"]]))
    return _json(task_templates.get_template_or_404(user, template_id))

