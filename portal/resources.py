"""Resources, specs and pools: the rules the miner's pages, the renter's pages and the API share.

System resources are what discovery found on the nodes (``Node.cpu_millis``,
``Node.memory_mib``, ``NodeChip`` rows); nothing here writes them. Custom
resources, resource specs and pools are the miner's, and every change to them
goes through the functions below, so a value is checked the same way wherever
it is typed. Bad input raises ``ResourceError``.

A capacity and a spec's needs have one shape, ``{"cpu": millicores,
"memory": MiB, kind: chips}``; a spec's custom resources are summed per kind.
Who may use which pool and spec (``open_pools``, ``open_specs``) lives here
too, so the scheduler's placement can ask the same question as the pages.
Allocation (what running replicas hold) arrives with the scheduler's replicas;
until then capacity is all there is to show.
"""

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, InvalidOperation, Overflow, localcontext

from flask_babel import gettext as _
from peewee import JOIN, IntegrityError, fn

from portal import values
from portal.db import Prepared, database, model_row
from portal.models import (
    REPLICA_ENDED,
    CustomResource,
    Group,
    Membership,
    Node,
    NodeChip,
    Pool,
    PoolGroup,
    PoolLimit,
    Replica,
    ReplicaChip,
    ResourceSpec,
    SpecResource,
    Subtask,
    Task,
)
from portal.money import MICRO, AmountError, format_amount, parse_amount
from portal.references import InUse, delete_unused

CPU, MEMORY = "cpu", "memory"
# The kinds the accelerator plugins know, offered even before a node with such chips is seen.
KNOWN_KINDS = ("sophgo.com/bm1684", "sophgo.com/bm1684x", "nvidia.com/gpu")
MAX_CPU_MILLIS = 1024 * 1000  # 1024 cores
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
MAX_CHIPS = 1024
MAX_PRICE = 1_000_000 * MICRO  # per machine-hour
NAME_MAX = {"resource": 64, "spec": 96, "pool": 64}
MAX_LIMIT = 10_000  # a per-user limit in a pool: chips, or running replicas
MAX_CULL_MINUTES = 7 * 24 * 60  # a pool's idle culling: at most a week
DESCRIPTION_MAX = 256


class ResourceError(values.FieldErrors):
    """Bad input for a resource, spec or pool, or a refused change (``values.FieldErrors``)."""


def _fail(field_name, message):
    raise ResourceError({field_name: message})


# --- typed values ------------------------------------------------------------------------


def _decimal(value, field_name, message):
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        number = Decimal(str(value).strip())
    except InvalidOperation:
        _fail(field_name, message)
    if not number.is_finite():
        _fail(field_name, message)
    return number


def _scaled(value, scale, limit, field_name, what, step):
    """``value`` x ``scale`` as an int in 1..limit, or a ResourceError naming ``what``;
    ``step`` says what 1 / ``scale`` is."""
    number = _decimal(value, field_name, _("Enter %(what)s as a number such as 4 or 0.5.",
                                            what=what))
    if number <= 0:
        _fail(field_name, _("%(what)s must be greater than zero.", what=what))
    if number > Decimal(limit) / scale:  # compared before scaling: 1e999999999 cannot overflow
        _fail(field_name, _("%(what)s is too large: at most %(n)s.", what=what,
                            n=format_units(limit, scale)))
    try:
        with localcontext() as context:  # more digits than Decimal keeps are not rounded off
            context.traps[Inexact] = True
            scaled = number * scale
    except Inexact:
        scaled = None
    if scaled is None or scaled != scaled.to_integral_value():
        _fail(field_name, _("%(what)s is too fine: use steps of %(step)s.", what=what,
                            step=step))
    return int(scaled)


def parse_cores(value, field_name="cpu"):
    """``"0.5"`` CPU cores -> 500 millicores; more than 0, at most 1024 cores."""
    return _scaled(value, 1000, MAX_CPU_MILLIS, field_name, _("CPU cores"), "0.001")


def parse_memory_gb(value, field_name="memory"):
    """``"2"`` GB -> 2048 MiB (GB x 1024); more than 0, at most 16 TiB, whole MiB."""
    return _scaled(value, 1024, MAX_MEMORY_MIB, field_name, _("Memory in GB"),
                   _("1 MiB (1/1024 GB)"))


def parse_count(value, field_name):
    """A chip count: empty is 0; a whole number from 0 to MAX_CHIPS."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    number = _decimal(value, field_name, _("Enter a whole number of chips, 0 or more."))
    if number < 0 or number != number.to_integral_value():
        _fail(field_name, _("Enter a whole number of chips, 0 or more."))
    if number > MAX_CHIPS:
        _fail(field_name, _("At most %(n)d chips.", n=MAX_CHIPS))
    return int(number)


def parse_price(value, field_name="price"):
    """Price per machine-hour in the miner's currency -> micro-units; more than 0."""
    try:
        price = parse_amount(value if isinstance(value, str) else str(value), allow_zero=False)
    except AmountError as exc:
        _fail(field_name, str(exc))
    except Overflow:  # an exponent such as 1e999999999
        price = MAX_PRICE + 1
    if price > MAX_PRICE:
        _fail(field_name, _("The price is too large: at most %(n)s per machine-hour.",
                            n=format_amount(MAX_PRICE)))
    return price


def clean_text(value, field_name, limit, required=True):
    """A name or a one-line description as typed (``portal.values.name``), or a
    ResourceError naming ``field_name``."""
    return values.checked(ResourceError, field_name, values.name, value, limit, required)


def format_units(amount, scale, places=None):
    """``amount / scale`` as short text: 500 millicores, scale 1000 -> ``"0.5"``;
    ``places`` rounds (for capacities read from hardware, not typed)."""
    value = Decimal(amount) / scale
    if places is not None:
        value = round(value, places)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_cores(millis):
    return format_units(millis, 1000)


def format_gb(mib, places=None):
    return format_units(mib, 1024, places)


def amount_text(micro):
    """A price as a form field shows it, which ``parse_amount`` reads back (no separators)."""
    return format_amount(micro).replace(",", "")


# --- what the nodes have -----------------------------------------------------------------


@dataclass
class NodeCapacity:
    """A node, its capacity and what starting and running replicas hold of it
    (``allocated``, same shape); ``schedulable``: new replicas may go there."""

    node: Node
    capacity: dict
    allocated: dict = field(default_factory=dict)

    @property
    def schedulable(self):
        node = self.node
        return node.enabled and node.ready and not node.cordoned and not node.draining


def node_capacities():
    """Every node with its capacity and allocation, by name: four queries, whatever the
    number of nodes."""
    chips = {}
    query = (NodeChip.select(NodeChip.node, NodeChip.kind, fn.COUNT(NodeChip.id))
             .where(NodeChip.present).group_by(NodeChip.node, NodeChip.kind).tuples())
    for node_id, kind, count in query:
        chips.setdefault(node_id, {})[kind] = count
    held = allocated_by_node()
    return [NodeCapacity(node, {CPU: node.cpu_millis, MEMORY: node.memory_mib,
                                **chips.get(node.id, {})}, held.get(node.id, {}))
            for node in Node.select().order_by(Node.name)]


_POOL_NODES = Prepared(lambda pool_id, is_default: (
    Node.select(Node.id, Node.cpu_millis, Node.memory_mib, NodeChip.kind, fn.COUNT(NodeChip.id))
    .join(NodeChip, JOIN.LEFT_OUTER, on=(NodeChip.node == Node.id) & NodeChip.present)
    .where(Node.enabled & ((Node.pool == pool_id) | (Node.pool.is_null() & is_default)))
    .group_by(Node.id, Node.cpu_millis, Node.memory_mib, NodeChip.kind)))


def pool_capacities(pool):
    """The capacities of ``pool``'s enabled nodes (Ready or not; allocations aside), as
    ``node_capacities`` has them: one prepared query. What a submission checks a spec
    against."""
    capacities = {}
    for node_id, cpu, memory, kind, count in _POOL_NODES.rows(pool.id, bool(pool.is_default)):
        capacity = capacities.setdefault(node_id, {CPU: cpu, MEMORY: memory})
        if kind is not None:
            capacity[kind] = count
    return list(capacities.values())


def allocated_by_node():
    """{node id: {cpu, memory, kind: chips}} that starting and running replicas hold."""
    held = {}
    specs = (Replica.select(Replica.node, fn.SUM(ResourceSpec.cpu_millis),
                            fn.SUM(ResourceSpec.memory_mib))
             .join(Subtask).join(ResourceSpec)
             .where(Replica.state.in_(("starting", "running")) & Replica.node.is_null(False))
             .group_by(Replica.node).tuples())
    for node_id, cpu, memory in specs:
        held[node_id] = {CPU: cpu, MEMORY: memory}
    chips = (ReplicaChip.select(NodeChip.node, NodeChip.kind, fn.COUNT(ReplicaChip.id))
             .join(NodeChip).group_by(NodeChip.node, NodeChip.kind).tuples())
    for node_id, kind, count in chips:
        held.setdefault(node_id, {})[kind] = count
    return held


def total_capacity(capacities, part="capacity"):
    """The sum of ``NodeCapacity`` capacities (or ``part="allocated"``), one dict."""
    total = Counter({CPU: 0, MEMORY: 0})
    for item in capacities:
        total.update(getattr(item, part))
    return dict(total)


def chip_kinds(capacities):
    """The chip kinds present in ``capacities`` (dicts), sorted."""
    return sorted({kind for capacity in capacities for kind in capacity} - {CPU, MEMORY})


def fits(needs, capacity):
    """Whether one node with ``capacity`` can hold ``needs`` (both in the shared shape)."""
    return all(capacity.get(kind, 0) >= amount for kind, amount in needs.items())


# --- custom resources --------------------------------------------------------------------


def resource_kinds():
    """Kinds a custom resource may name: the kinds seen on nodes first, then the other kinds
    the accelerator plugins know."""
    seen = {kind for (kind,) in NodeChip.select(NodeChip.kind).distinct().tuples()}
    return sorted(seen) + sorted(set(KNOWN_KINDS) - seen)


def create_resource(name, kind, description=""):
    name = clean_text(name, "name", NAME_MAX["resource"])
    description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    if kind not in resource_kinds():
        _fail("kind", _("Choose a system resource from the list."))
    return _save(CustomResource(name=name, kind=kind, description=description))


def update_resource(resource, name, description=""):
    """Rename or redescribe; the kind stays (specs were sized for it)."""
    name = clean_text(name, "name", NAME_MAX["resource"])
    description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    resource.name, resource.description = name, description
    return _save(resource)


def _save(row):
    """Save a row whose ``name`` is unique; a duplicate is a ResourceError on ``name``.

    The unique index decides, with no query before: a transaction that starts by
    writing waits for SQLite's lock, where one that reads first can fail at once
    ("database is locked") when discovery wrote in between.
    """
    try:
        with database.atomic():
            row.save()
    except IntegrityError:
        _fail("name", _("The name '%(name)s' is taken.", name=row.name))
    return row


def delete_resource(resource):
    """Delete a custom resource no spec uses. While one does, nothing is deleted and the
    ResourceError names the specs (``portal.references``; the database's RESTRICT backs it)."""
    try:
        delete_unused(resource)
    except InUse as exc:
        _fail(None, str(exc))


# --- resource specs ----------------------------------------------------------------------


def count_field(resource):
    """The form field (and error key) of a spec's count of ``resource``."""
    return f"count_{resource.id}"


def _needs(cpu_millis, memory_mib, items):
    needs = Counter({CPU: cpu_millis, MEMORY: memory_mib})
    for resource, count in items:
        needs[resource.kind] += count
    return dict(needs)


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
    needs = _needs(values.cpu_millis, values.memory_mib, values.items)

    def most(kind):
        return max(capacity.get(kind, 0) for capacity in capacities)

    errors = {}
    if needs[CPU] > most(CPU):
        errors["cpu"] = _("No node has %(need)s CPU cores; the largest has %(most)s.",
                          need=format_cores(needs[CPU]), most=format_cores(most(CPU)))
    if needs[MEMORY] > most(MEMORY):
        errors["memory"] = _("No node has %(need)s GB of memory; the largest has %(most)s GB.",
                             need=format_gb(needs[MEMORY]), most=format_gb(most(MEMORY), 1))
    by_kind = {}
    for resource, _count in values.items:
        by_kind.setdefault(resource.kind, []).append(resource)
    for kind, resources in by_kind.items():
        if needs[kind] > most(kind):
            errors[count_field(resources[0])] = _(
                "No node has %(need)d %(name)s; the largest has %(most)d.", need=needs[kind],
                name=" + ".join(r.name for r in resources), most=most(kind))
    if not errors and not any(fits(needs, capacity) for capacity in capacities):
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
            _save(spec)
            SpecResource.delete().where(SpecResource.spec == spec).execute()
            if values.items:
                SpecResource.insert_many([{"spec": spec, "resource": resource, "count": count}
                                          for resource, count in values.items]).execute()
    except IntegrityError:  # a custom resource was deleted meanwhile
        _fail(None, _("A custom resource of this spec no longer exists: reload the page."))
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
        _fail(None, str(exc))


# --- pools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolLimits:
    """The miner's per-user limits in one pool, None where there is none: chips one renter
    may hold at once (all kinds together), and replicas one renter may have starting or
    running at once. The scheduler's placement reads the same row. ``cull_idle_minutes``:
    a notebook in the pool idle that long is stopped (None: never)."""

    max_chips_per_user: int | None = None
    max_replicas_per_user: int | None = None
    cull_idle_minutes: int | None = None


LIMIT_FIELDS = ("max_chips_per_user", "max_replicas_per_user", "cull_idle_minutes")


@dataclass
class PoolView:
    """A pool with its bound groups, its nodes, their total capacity, the specs that fit (a
    spec fits when some schedulable node of the pool can hold it) and its ``PoolLimits``."""

    pool: Pool
    groups: list
    nodes: list
    specs: list
    limits: PoolLimits = field(default_factory=PoolLimits)

    def __post_init__(self):
        self.capacity = total_capacity(self.nodes)

    def open_to(self, group_ids):
        """Whether a renter in ``group_ids`` may use the pool: a bound group of theirs, or
        the default pool while no group is bound to it."""
        bound = {group.id for group in self.groups}
        return bool(bound & group_ids) or (self.pool.is_default and not bound)


def default_pool():
    return Pool.get(Pool.is_default == True)  # noqa: E712 (SQL, not Python)


def pool_views(nodes=None, specs=None):
    """Every pool, the default first: a few queries, whatever the number of nodes."""
    nodes = node_capacities() if nodes is None else nodes
    specs = spec_views() if specs is None else specs
    pools = list(Pool.select().order_by(Pool.is_default.desc(), Pool.name))
    default_id = next(pool.id for pool in pools if pool.is_default)
    groups, members = {}, {}
    for binding in PoolGroup.select(PoolGroup, Group).join(Group).order_by(Group.name):
        groups.setdefault(binding.pool_id, []).append(binding.group)
    for item in nodes:
        members.setdefault(item.node.pool_id or default_id, []).append(item)
    limits = all_pool_limits()
    views = []
    for pool in pools:
        held = members.get(pool.id, [])
        ready = [item.capacity for item in held if item.schedulable]
        fitting = [s for s in specs if any(fits(s.needs, capacity) for capacity in ready)]
        views.append(PoolView(pool, groups.get(pool.id, []), held, fitting,
                              limits.get(pool.id, PoolLimits())))
    return views


def create_pool(name, description=""):
    name = clean_text(name, "name", NAME_MAX["pool"])
    description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    return _save(Pool(name=name, description=description))


def update_pool(pool, name, description=""):
    """Rename or redescribe a pool; the default pool keeps its name."""
    name = clean_text(name, "name", NAME_MAX["pool"])
    if pool.is_default and name != pool.name:
        _fail("name", _("The default pool cannot be renamed."))
    pool.description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    pool.name = name
    return _save(pool)


def delete_pool(pool):
    """Delete a pool other than the default; its nodes return to the default pool.

    Refused while a task submitted to it has a replica that has not ended
    (waiting or running work). Its ended tasks are kept, filed under the
    default pool.
    """
    if pool.is_default:
        _fail(None, _("The default pool cannot be deleted."))
    try:
        with database.atomic():
            busy = (Task.select().join(Replica)
                    .where((Task.pool == pool) & Replica.state.not_in(REPLICA_ENDED))
                    .distinct().count())
            if busy:
                _fail(None, _("Pool '%(name)s' still has %(n)d task(s) waiting or running: "
                              "stop them first.", name=pool.name, n=busy))
            Node.update(pool=None).where(Node.pool == pool).execute()
            PoolGroup.delete().where(PoolGroup.pool == pool).execute()
            Task.update(pool=default_pool()).where(Task.pool == pool).execute()
            delete_unused(pool)
    except InUse as exc:
        _fail(None, str(exc))


def move_node(node, pool):
    """Put a whole node into ``pool``. Only ``Node.pool`` is written, so a discovery
    saving the same node at the same time loses nothing."""
    Node.update(pool=None if pool.is_default else pool).where(Node.id == node.id).execute()


def set_pool_groups(pool, group_ids):
    """Bind ``pool`` to exactly the groups with these ids (none: the default pool serves
    every renter, another pool nobody)."""
    with database.atomic():  # the write first (see _save)
        PoolGroup.delete().where(PoolGroup.pool == pool).execute()
        groups = list(Group.select().where(Group.id.in_(list(group_ids))))
        if len(groups) != len(set(group_ids)):
            _fail(None, _("One of the chosen groups no longer exists: reload the page."))
        if groups:
            PoolGroup.insert_many([{"pool": pool, "group": g} for g in groups]).execute()


def parse_limit(value, field_name):
    """A per-user limit as typed: empty (or None) is no limit, else a whole number from 0
    (nothing in this pool) to MAX_LIMIT."""
    return values.checked(ResourceError, field_name, values.optional_whole_number, value, 0,
                          MAX_LIMIT, message=_("Enter a whole number from 0 to %(n)d, or leave "
                                               "it empty for no limit.", n=MAX_LIMIT))


def parse_cull_minutes(value, field_name="cull_idle_minutes"):
    """A pool's idle culling as typed: empty (or None) is off, else whole minutes from 1 to
    MAX_CULL_MINUTES."""
    return values.checked(ResourceError, field_name, values.optional_whole_number, value, 1,
                          MAX_CULL_MINUTES, message=_("Enter whole minutes from 1 to %(n)d, or "
                                                      "leave it empty to never stop idle "
                                                      "notebooks.", n=MAX_CULL_MINUTES))


def _limits_of(row):
    return PoolLimits(row.max_chips_per_user, row.max_replicas_per_user, row.cull_idle_minutes)


def all_pool_limits():
    """{pool id: PoolLimits} of the pools that have any limit: one query."""
    return {row.pool_id: _limits_of(row) for row in PoolLimit.select()}


def pool_limits(pool):
    """The ``PoolLimits`` of ``pool`` (no row: no limits)."""
    row = PoolLimit.get_or_none(PoolLimit.pool == pool)
    return _limits_of(row) if row else PoolLimits()


def set_pool_limits(pool, **changes):
    """Set the limits named in ``changes`` (``max_chips_per_user``, ``max_replicas_per_user``,
    ``cull_idle_minutes``: text as typed or an int; empty or None is no limit, or no culling);
    the others stay. All checked
    first, all errors raised together. Returns the pool's ``PoolLimits``. A pool without
    any limit keeps no row. Tasks already running are not stopped: a lower limit only
    holds back what starts next."""
    unknown = set(changes) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown limits: {sorted(unknown)}")
    errors, parsed = {}, {}
    for name, value in changes.items():
        try:
            parse = parse_cull_minutes if name == "cull_idle_minutes" else parse_limit
            parsed[name] = parse(value, name)
        except ResourceError as exc:
            errors.update(exc.errors)
    if errors:
        raise ResourceError(errors)
    if parsed:
        with database.atomic():  # the write first (see _save)
            (PoolLimit.insert(pool=pool, **parsed)
             .on_conflict(conflict_target=[PoolLimit.pool],
                          update={getattr(PoolLimit, name): v for name, v in parsed.items()})
             .execute())
            PoolLimit.delete().where((PoolLimit.pool == pool)
                                     & PoolLimit.max_chips_per_user.is_null()
                                     & PoolLimit.max_replicas_per_user.is_null()
                                     & PoolLimit.cull_idle_minutes.is_null()).execute()
    return pool_limits(pool)


# --- what a renter may use ---------------------------------------------------------------


def group_ids_of(user):
    return {gid for (gid,) in Membership.select(Membership.group)
            .where(Membership.user == user).tuples()}


def open_pools(user, views=None):
    """The ``PoolView``s ``user`` may use: the default pool when no group is bound to it or
    the user is in one that is, and every other pool bound to one of the user's groups."""
    groups = group_ids_of(user)
    return [view for view in (pool_views() if views is None else views) if view.open_to(groups)]


_POOL_FIELDS = Pool._meta.sorted_fields
_POOL_NAMED = Prepared(lambda user_id, name: (
    Pool.select(*_POOL_FIELDS, fn.COUNT(PoolGroup.group), fn.COUNT(Membership.user))
    .join(PoolGroup, JOIN.LEFT_OUTER)
    .join(Membership, JOIN.LEFT_OUTER,
          on=(Membership.group == PoolGroup.group) & (Membership.user == user_id))
    .where(Pool.name == name).group_by(*_POOL_FIELDS)))


def open_pool(user, name):
    """The pool named ``name`` when ``user`` may use it (the rule of ``open_pools``), else
    None: one prepared query, where a submission needs one pool, not every ``PoolView``."""
    if not isinstance(name, str) or "\x00" in name:  # no pool's: PostgreSQL refuses NUL
        return None
    rows = _POOL_NAMED.rows(user.id, name)
    if not rows:
        return None
    *fields, bound, mine = rows[0]
    pool = model_row(Pool, fields)
    return pool if mine or (pool.is_default and not bound) else None


def open_specs(user, pools=None):
    """Enabled specs that fit some pool ``user`` may use: ``[(SpecView, [PoolView])]``;
    ``pools`` is ``open_pools(user)`` when the caller has it already."""
    pools = open_pools(user) if pools is None else pools
    fitting = {view.pool.id: {s.spec.id for s in view.specs} for view in pools}
    found = []
    for spec in {s.spec.id: s for view in pools for s in view.specs}.values():
        where = [view for view in pools if spec.spec.id in fitting[view.pool.id]]
        if spec.spec.enabled:
            found.append((spec, where))
    return sorted(found, key=lambda item: item[0].spec.name)


def init_app(app):
    """Number formats every page may use: ``money``, ``cores``, ``gb``."""
    app.jinja_env.globals.update(money=format_amount, cores=format_cores, gb=format_gb)
