"""Custom resources and resource specs: the miner's catalogue of what a replica may ask for.

A custom resource names a kind of chip (``sophgo.com/bm1684x``) for the renters; a spec
is CPU, memory, a price per machine-hour and counts of custom resources. Every change
goes through the functions below, so a value is checked the same way wherever it is
typed (page or API); bad input raises ``units.ResourceError``.
"""

from dataclasses import dataclass, field

from flask_babel import gettext as _
from peewee import JOIN, IntegrityError

from portal.capacity import CPU, MEMORY, fits, needs, node_capacities
from portal.db import Prepared, database, model_row
from portal.models import CustomResource, NodeChip, ResourceSpec, SpecResource
from portal.references import InUse, delete_unused
from portal.units import (
    DESCRIPTION_MAX,
    NAME_MAX,
    ResourceError,
    clean_text,
    fail,
    format_cores,
    format_gb,
    parse_cores,
    parse_count,
    parse_memory_gb,
    parse_price,
)

# The kinds the accelerator plugins know, offered even before a node with such chips is seen.
KNOWN_KINDS = ("sophgo.com/bm1684", "sophgo.com/bm1684x", "nvidia.com/gpu")


def resource_kinds():
    """Kinds a custom resource may name: the kinds seen on nodes first, then the other kinds
    the accelerator plugins know."""
    seen = {kind for (kind,) in NodeChip.select(NodeChip.kind).distinct().tuples()}
    return sorted(seen) + sorted(set(KNOWN_KINDS) - seen)


def create_resource(name, kind, description=""):
    name = clean_text(name, "name", NAME_MAX["resource"])
    description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    if kind not in resource_kinds():
        fail("kind", _("Choose a system resource from the list."))
    return save_named(CustomResource(name=name, kind=kind, description=description))


def update_resource(resource, name, description=""):
    """Rename or redescribe; the kind stays (specs were sized for it)."""
    name = clean_text(name, "name", NAME_MAX["resource"])
    description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    resource.name, resource.description = name, description
    return save_named(resource)


def save_named(row):
    """Save a row whose ``name`` is unique (a custom resource, spec or pool); a duplicate is
    a ResourceError on ``name``.

    The unique index decides, with no query before: a transaction that starts by
    writing waits for SQLite's lock, where one that reads first can fail at once
    ("database is locked") when discovery wrote in between.
    """
    try:
        with database.atomic():
            row.save()
    except IntegrityError:
        fail("name", _("The name '%(name)s' is taken.", name=row.name))
    return row


def delete_resource(resource):
    """Delete a custom resource no spec uses. While one does, nothing is deleted and the
    ResourceError names the specs (``portal.references``; the database's RESTRICT backs it)."""
    try:
        delete_unused(resource)
    except InUse as exc:
        fail(None, str(exc))


# --- resource specs ----------------------------------------------------------------------


def count_field(resource):
    """The form field (and error key) of a spec's count of ``resource``."""
    return f"count_{resource.id}"


def _needs(cpu_millis, memory_mib, items):
    """The needs (``portal.capacity``) of a spec with ``items`` ``[(CustomResource, n)]``."""
    return needs(cpu_millis, memory_mib, [(resource.kind, count) for resource, count in items])


@dataclass
class SpecView:
    """A spec and its custom resources ``[(CustomResource, count)]``, by resource name."""

    spec: ResourceSpec
    items: list = field(default_factory=list)

    def __post_init__(self):
        self.needs = _needs(self.spec.cpu_millis, self.spec.memory_mib, self.items)


def spec_views():
    """Every spec with its custom resources, by name: two queries."""
    items = {}
    query = (SpecResource.select(SpecResource, CustomResource).join(CustomResource)
             .order_by(CustomResource.name))
    for row in query:
        items.setdefault(row.spec_id, []).append((row.resource, row.count))
    return [SpecView(spec, items.get(spec.id, []))
            for spec in ResourceSpec.select().order_by(ResourceSpec.name)]


_SPEC_FIELDS = ResourceSpec._meta.sorted_fields
_RESOURCE_FIELDS = CustomResource._meta.sorted_fields
_SPEC_NAMED = Prepared(lambda name: (
    ResourceSpec.select(*_SPEC_FIELDS, *_RESOURCE_FIELDS, SpecResource.count)
    .join(SpecResource, JOIN.LEFT_OUTER).join(CustomResource, JOIN.LEFT_OUTER)
    .where(ResourceSpec.name == name).order_by(CustomResource.name)))


def spec_view(name):
    """The ``SpecView`` of the spec named ``name`` (enabled or not), or None: one prepared
    query, for a submission's check."""
    if not isinstance(name, str) or "\x00" in name:  # no spec's: PostgreSQL refuses NUL
        return None
    rows = _SPEC_NAMED.rows(name)
    if not rows:
        return None
    cut, end = len(_SPEC_FIELDS), len(_SPEC_FIELDS) + len(_RESOURCE_FIELDS)
    items = [(model_row(CustomResource, row[cut:end]), row[end]) for row in rows
             if row[cut] is not None]
    return SpecView(model_row(ResourceSpec, rows[0][:cut]), items)


def suggest_name(cpu_millis, memory_mib, items):
    """The seed's style of name, "4 CPU-2 GB-2 TPU 1684X": chips by resource name."""
    parts = [f"{format_cores(cpu_millis)} CPU", f"{format_gb(memory_mib)} GB"]
    parts += [f"{count} {resource.name}"
              for resource, count in sorted(items, key=lambda item: item[0].name) if count]
    return "-".join(parts)


@dataclass
class SpecValues:
    """A spec's checked values; ``items`` are ``(CustomResource, count)`` with count > 0."""

    name: str
    cpu_millis: int
    memory_mib: int
    price_per_hour: int
    items: list


def parse_spec(name, cpu, memory_gb, price, counts):
    """Check a spec as typed; ``counts`` is ``{CustomResource: count text}``.

    Every field is checked and all errors are raised together. An empty name
    becomes the suggested one.
    """
    errors = {}

    def attempt(parse, *args):
        try:
            return parse(*args)
        except ResourceError as exc:
            errors.update(exc.errors)

    cpu_millis = attempt(parse_cores, cpu)
    memory_mib = attempt(parse_memory_gb, memory_gb)
    price_per_hour = attempt(parse_price, price)
    items = [(resource, attempt(parse_count, text, count_field(resource)))
             for resource, text in counts.items()]
    items = sorted(((r, n) for r, n in items if n), key=lambda item: item[0].name)
    name = attempt(clean_text, name, "name", NAME_MAX["spec"], False)
    if not errors and not name:
        name = attempt(clean_text, suggest_name(cpu_millis, memory_mib, items), "name",
                       NAME_MAX["spec"])
    if errors:
        raise ResourceError(errors)
    return SpecValues(name, cpu_millis, memory_mib, price_per_hour, items)


def _check_some_node_holds(values):
    """Refuse a spec bigger than every known node (any state); no nodes known, no refusal."""
    capacities = [item.capacity for item in node_capacities()]
    if not capacities:
        return
    wanted = _needs(values.cpu_millis, values.memory_mib, values.items)

    def most(kind):
        return max(capacity.get(kind, 0) for capacity in capacities)

    errors = {}
    if wanted[CPU] > most(CPU):
        errors["cpu"] = _("No node has %(need)s CPU cores; the largest has %(most)s.",
                          need=format_cores(wanted[CPU]), most=format_cores(most(CPU)))
    if wanted[MEMORY] > most(MEMORY):
        errors["memory"] = _("No node has %(need)s GB of memory; the largest has %(most)s GB.",
                             need=format_gb(wanted[MEMORY]), most=format_gb(most(MEMORY), 1))
    by_kind = {}
    for resource, _count in values.items:
        by_kind.setdefault(resource.kind, []).append(resource)
    for kind, resources in by_kind.items():
        if wanted[kind] > most(kind):
            errors[count_field(resources[0])] = _(
                "No node has %(need)d %(name)s; the largest has %(most)d.", need=wanted[kind],
                name=" + ".join(r.name for r in resources), most=most(kind))
    if not errors and not any(fits(wanted, capacity) for capacity in capacities):
        errors[None] = _("No single node has all of this at once.")
    if errors:
        raise ResourceError(errors)


def save_spec(spec, values):
    """Create (``spec`` None) or change a spec from ``parse_spec``'s values.

    Refused when the nodes known so far are all too small. A new price applies
    to replicas started after the change; what was charged stays as it was.
    """
    _check_some_node_holds(values)
    spec = spec or ResourceSpec()
    spec.name, spec.cpu_millis, spec.memory_mib = values.name, values.cpu_millis, values.memory_mib
    spec.price_per_hour = values.price_per_hour
    try:
        with database.atomic():
            save_named(spec)
            SpecResource.delete().where(SpecResource.spec == spec).execute()
            if values.items:
                SpecResource.insert_many([{"spec": spec, "resource": resource, "count": count}
                                          for resource, count in values.items]).execute()
    except IntegrityError:  # a custom resource was deleted meanwhile
        fail(None, _("A custom resource of this spec no longer exists: reload the page."))
    return spec


def set_spec_enabled(spec, enabled):
    ResourceSpec.update(enabled=bool(enabled)).where(ResourceSpec.id == spec.id).execute()
    spec.enabled = bool(enabled)


def delete_spec(spec):
    """Delete a spec no task and no charge uses (they keep it for billing; a notebook's spec
    becomes None). While one does, nothing is deleted and the ResourceError says so."""
    try:
        with database.atomic():
            SpecResource.delete().where(SpecResource.spec == spec).execute()
            delete_unused(spec)
    except InUse as exc:
        fail(None, str(exc))


