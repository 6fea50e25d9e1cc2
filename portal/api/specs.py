"""Resource specs: the miner sees and writes them all; a renter sees the ones they may use.

Amounts go out as stored (``cpu_millis``, ``memory_mib``, ``price_per_hour``
in micro-units) and come in as people type them, as decimal strings (``cpu``
cores, ``memory_gb``, ``price`` in the currency): the same rules as the Specs
page read them, so no float ever touches a price. A spec's chips are
``{"custom resource name": count}`` both ways.
"""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import specs, values
from portal.access import open_specs
from portal.api.auth import api_user
from portal.api.errors import ApiError, refusals, refused
from portal.api.registry import route
from portal.api.resources import REF, get_or_404, ref
from portal.api.schema import Array, Boolean, Integer, Map, Name, Object, Record, String
from portal.db import database
from portal.models import CustomResource, ResourceSpec, SpecResource
from portal.money import decimal_text, format_amount
from portal.pools import pool_views
from portal.settings import get as setting
from portal.units import MAX_CHIPS, MAX_PRICE, NAME_MAX, format_cores, format_gb

SPEC = Record({
    "id": Integer(),
    "name": String(),
    "cpu_millis": Integer(_l("CPU in millicores")),
    "memory_mib": Integer(_l("Memory in MiB")),
    "price_per_hour": Integer(_l("Price per machine-hour in micro-units (1 unit = 1000000)")),
    "price_per_hour_text": String(_l("The price for display, with the currency, e.g. 1.50 UNC")),
    "resources": Map(Integer(), _l("Chips per custom resource, by the resource's name")),
    "enabled": Boolean(_l("Renters may pick it")),
    "fits_somewhere": Boolean(_l("Some schedulable node can hold it now")),
    "pools": Array(REF, _l("Pools with a schedulable node that can hold it; for a renter, "
                           "only their pools")),
}, name="ResourceSpec")

SPEC_FIELDS = {
    "name": Name(NAME_MAX["spec"], _l("Unique; empty or left out on creation: the "
                                            "suggested name, such as '4 CPU-2 GB-2 TPU 1684X'"),
                 required=False),
    "cpu": String(_l("CPU cores as a decimal string, e.g. \"4\" or \"0.5\" (steps of 0.001; "
                     "more than 1024: 409)"), pattern=values.decimal_pattern(3, 4),
                  rule=_l("a decimal more than zero, at most 3 decimals")),
    "memory_gb": String(_l("Memory in GB (1 GB = 1024 MiB) as a decimal string, e.g. \"2\" "
                           "(whole MiB; more than 16 TiB: 409)"),
                        pattern=values.decimal_pattern(10, 5),
                        rule=_l("a decimal more than zero, at most 10 decimals")),
    "price": String(_l("Price per machine-hour in the miner's currency as a decimal string, "
                       "e.g. \"1.25\" (at most 6 decimals; never a JSON number; more than "
                       "%(n)s: 409)", n=format_amount(MAX_PRICE)),
                    pattern=values.AMOUNT, rule=_l("an amount more than zero, at most 6 "
                                                   "decimals")),
    "resources": Map(Integer(minimum=0, maximum=MAX_CHIPS),
                     _l("Chips per custom resource, by the resource's name (0 leaves it "
                        "out; an unknown name: 409); when sent, it replaces the whole set"),
                     keys=Name(NAME_MAX["resource"])),
    "enabled": Boolean(_l("Renters may pick it (a new spec is enabled unless this says no)")),
}
NEW_SPEC = Object(SPEC_FIELDS, required=("cpu", "memory_gb", "price"), name="NewResourceSpec")
SPEC_CHANGE = Object(SPEC_FIELDS, name="ResourceSpecChange",
                     description=_l("Any of the fields; the others keep their values"))


def spec_json(view, pools, currency):
    spec = view.spec
    return {
        "id": spec.id, "name": spec.name, "cpu_millis": spec.cpu_millis,
        "memory_mib": spec.memory_mib, "price_per_hour": spec.price_per_hour,
        "price_per_hour_text": f"{format_amount(spec.price_per_hour)} {currency}",
        "resources": {resource.name: count for resource, count in view.items},
        "enabled": spec.enabled, "fits_somewhere": bool(pools),
        "pools": [ref(pool.pool) for pool in pools],
    }


def _visible():
    """``[(SpecView, [PoolView where it fits])]`` the caller may see: every spec for the
    miner; for a renter, the enabled specs that fit one of their pools (``open_specs``)."""
    user = api_user()
    if user.role != "miner":
        return open_specs(user)
    views = specs.spec_views()
    pools = pool_views(specs=views)
    fitting = {view.pool.id: {s.spec.id for s in view.specs} for view in pools}
    return [(spec, [p for p in pools if spec.spec.id in fitting[p.pool.id]]) for spec in views]


def _one(spec_id):
    """One visible spec as JSON; 404 when it does not exist or the caller may not see it."""
    for view, pools in _visible():
        if view.spec.id == spec_id:
            return spec_json(view, pools, setting("currency"))
    raise ApiError(404, "not_found", _("There is no spec %(id)d you may use.", id=spec_id))


@route("/specs", summary=_l("Specs: all of them for the miner, those you may use for a renter"),
       response=Array(SPEC))
def list_specs():
    currency = setting("currency")
    return [spec_json(view, pools, currency) for view, pools in _visible()]


@route("/specs/<int:spec_id>", summary=_l("One spec (a renter sees only those they may use)"),
       response=SPEC)
def get_spec(spec_id):
    return _one(spec_id)


def _current(spec):
    """A spec's values as the body would send them, for what a change leaves out."""
    items = (SpecResource.select(SpecResource.count, CustomResource.name).join(CustomResource)
             .where(SpecResource.spec == spec).tuples())
    return {"name": spec.name, "cpu": format_cores(spec.cpu_millis),
            "memory_gb": format_gb(spec.memory_mib),
            "price": decimal_text(spec.price_per_hour),
            "resources": {name: count for count, name in items}}


def _counts(sent):
    """``{CustomResource: count}`` for the body's ``{name: count}``; an unknown name is 409."""
    by_name = {r.name: r for r in CustomResource.select()}
    unknown = {f"resources.{name}": _("There is no custom resource '%(name)s'.", name=name)
               for name in sent if name not in by_name}
    if unknown:
        raise refused(" ".join(unknown.values()), unknown)
    return {by_name[name]: count for name, count in sent.items()}


def _save(spec, body):
    """Create (``spec`` None) or change a spec from ``body``; all of it or nothing.
    A body holding only ``enabled`` skips the size checks, so a spec that no longer fits
    any node can still be disabled."""
    merged = {**(_current(spec) if spec else {"name": "", "resources": {}}), **body}
    counts = _counts(merged["resources"])
    rename = {"memory": "memory_gb",
              **{specs.count_field(r): f"resources.{r.name}" for r in counts}}
    with refusals(rename), database.atomic():
        if spec is None or set(body) - {"enabled"}:
            spec = specs.save_spec(spec, specs.parse_spec(
                merged["name"], merged["cpu"], merged["memory_gb"], merged["price"], counts))
        if "enabled" in body:
            specs.set_spec_enabled(spec, body["enabled"])
    return _one(spec.id)


@route("/specs", "POST", summary=_l("Create a spec (amounts as decimal strings)"), role="miner",
       body=NEW_SPEC, response=SPEC, status=201)
def create_spec_api(body):
    return _save(None, body)


@route("/specs/<int:spec_id>", "PATCH", summary=_l("Change a spec: any of its fields"),
       role="miner", body=SPEC_CHANGE, response=SPEC)
def update_spec_api(spec_id, body):
    return _save(_spec_or_404(spec_id), body)


@route("/specs/<int:spec_id>", "DELETE",
       summary=_l("Delete a spec (409 while a task or a charge uses it)"), role="miner")
def delete_spec_api(spec_id):
    with refusals():
        specs.delete_spec(_spec_or_404(spec_id))


def _spec_or_404(spec_id):
    return get_or_404(ResourceSpec, spec_id, _("There is no spec %(id)d.", id=spec_id))
