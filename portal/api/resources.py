"""Custom resources: every signed-in user reads them (a spec names them); the miner writes.

The helpers at the top serve the specs, pools and nodes endpoints too: load a row or answer
404, and name another object (``REF``). A refusal of the rules (``portal.specs``) is 409
``conflict`` (``portal.api.errors.refusals``).
"""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.api.errors import ApiError, refusals
from portal.api.registry import route
from portal.api.schema import Array, Integer, Name, Object, Record, String
from portal.models import CustomResource
from portal.specs import create_resource, delete_resource, update_resource
from portal.units import DESCRIPTION_MAX, NAME_MAX

KIND_MAX = 64  # what the column holds
MAX_ID = 2**63 - 1  # a row id the database can hold; a bigger one is no row at all


def get_or_404(model, object_id, message):
    """The row of ``model`` with this id, or ApiError(404) saying ``message``."""
    found = model.get_or_none(model.id == object_id) if 0 < object_id <= MAX_ID else None
    if found is None:
        raise ApiError(404, "not_found", message)
    return found


REF = Record({"id": Integer(), "name": String()}, name="Ref")


def ref(row):
    """``{"id", "name"}`` of a row: how one object names another (a spec's pools...)."""
    return {"id": row.id, "name": row.name}


RESOURCE = Record({
    "id": Integer(),
    "name": String(),
    "kind": String(_l("The system resource kind it names, e.g. sophgo.com/bm1684x")),
    "description": String(),
}, name="CustomResource")

_NAME = Name(NAME_MAX["resource"], _l("Unique; HTML and any Unicode are kept as data"))
DESCRIPTION = Name(DESCRIPTION_MAX, _l("One line; may be empty"), required=False)
NEW_RESOURCE = Object({
    "name": _NAME,
    "kind": Name(KIND_MAX, _l("A system resource kind: one seen on a node, or "
                              "sophgo.com/bm1684, sophgo.com/bm1684x, nvidia.com/gpu")),
    "description": DESCRIPTION,
}, required=("name", "kind"), name="NewCustomResource")
RESOURCE_CHANGE = Object({"name": _NAME, "description": DESCRIPTION}, name="CustomResourceChange",
                         description=_l("Any of the fields; the kind stays"))


def resource_json(resource):
    return {"id": resource.id, "name": resource.name, "kind": resource.kind,
            "description": resource.description}


def _resource_or_404(resource_id):
    return get_or_404(CustomResource, resource_id,
                      _("There is no custom resource %(id)d.", id=resource_id))


@route("/resources", summary=_l("Custom resources: the names specs use for chips"),
       response=Array(RESOURCE))
def list_resources():
    return [resource_json(r) for r in CustomResource.select().order_by(CustomResource.name)]


@route("/resources", "POST", summary=_l("Create a custom resource over a system resource kind"),
       role="miner", body=NEW_RESOURCE, response=RESOURCE, status=201)
def create_resource_api(body):
    with refusals():
        resource = create_resource(body["name"], body["kind"], body.get("description", ""))
    return resource_json(resource)


@route("/resources/<int:resource_id>", "PATCH",
       summary=_l("Rename or redescribe a custom resource"), role="miner",
       body=RESOURCE_CHANGE, response=RESOURCE)
def update_resource_api(resource_id, body):
    resource = _resource_or_404(resource_id)
    with refusals():
        update_resource(resource, body.get("name", resource.name),
                        body.get("description", resource.description))
    return resource_json(resource)


@route("/resources/<int:resource_id>", "DELETE",
       summary=_l("Delete a custom resource (409 while a spec uses it)"), role="miner")
def delete_resource_api(resource_id):
    with refusals():
        delete_resource(_resource_or_404(resource_id))
