"""Pools: the miner's groups of nodes, who may use each (bound groups) and the per-user
limits in each (chips, running replicas, idle culling, maximum run time).

A pool's view (``PoolView``) carries its nodes' capacity and the specs that fit one of
its schedulable nodes; the scheduler's placement reads the same limits. Bad input raises
``units.ResourceError``.
"""

import re
from dataclasses import dataclass, field

from flask_babel import gettext as _

from portal import values
from portal.capacity import fits, node_capacities, total_capacity
from portal.db import database
from portal.models import REPLICA_ENDED, Group, Node, Pool, PoolGroup, PoolLimit, Replica, Task
from portal.references import InUse, delete_unused
from portal.specs import save_named, spec_views
from portal.units import DESCRIPTION_MAX, NAME_MAX, ResourceError, clean_text, fail

MAX_LIMIT = 10_000  # a per-user limit in a pool: chips, or running replicas
MAX_CULL_MINUTES = 7 * 24 * 60  # a pool's idle culling: at most a week
MAX_RUN_MINUTES = 365 * 24 * 60  # a task's or notebook's maximum run time: at most a year


@dataclass(frozen=True)
class PoolLimits:
    """The miner's per-user limits in one pool, None where there is none: chips one renter
    may hold at once (all kinds together), and replicas one renter may have starting or
    running at once. The scheduler's placement reads the same row. ``cull_idle_minutes``:
    a notebook in the pool idle that long is stopped (None: never). ``max_run_minutes``: the
    most a task or notebook may run in the pool (None: no cap)."""

    max_chips_per_user: int | None = None
    max_replicas_per_user: int | None = None
    cull_idle_minutes: int | None = None
    max_run_minutes: int | None = None


LIMIT_FIELDS = ("max_chips_per_user", "max_replicas_per_user", "cull_idle_minutes",
                "max_run_minutes")


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
    return save_named(Pool(name=name, description=description))


def update_pool(pool, name, description=""):
    """Rename or redescribe a pool; the default pool keeps its name."""
    name = clean_text(name, "name", NAME_MAX["pool"])
    if pool.is_default and name != pool.name:
        fail("name", _("The default pool cannot be renamed."))
    pool.description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    pool.name = name
    return save_named(pool)


def delete_pool(pool):
    """Delete a pool other than the default; its nodes return to the default pool.

    Refused while a task submitted to it has a replica that has not ended
    (waiting or running work). Its ended tasks are kept, filed under the
    default pool.
    """
    if pool.is_default:
        fail(None, _("The default pool cannot be deleted."))
    try:
        with database.atomic():
            busy = (Task.select().join(Replica)
                    .where((Task.pool == pool) & Replica.state.not_in(REPLICA_ENDED))
                    .distinct().count())
            if busy:
                fail(None, _("Pool '%(name)s' still has %(n)d task(s) waiting or running: "
                              "stop them first.", name=pool.name, n=busy))
            Node.update(pool=None).where(Node.pool == pool).execute()
            PoolGroup.delete().where(PoolGroup.pool == pool).execute()
            Task.update(pool=default_pool()).where(Task.pool == pool).execute()
            delete_unused(pool)
    except InUse as exc:
        fail(None, str(exc))


def move_node(node, pool):
    """Put a whole node into ``pool``. Only ``Node.pool`` is written, so a discovery
    saving the same node at the same time loses nothing. A Slurm pool's nodes are its
    partition's, put there by discovery: no node moves into or out of one."""
    if pool.slurm_cluster_id or node.slurm_cluster_id:
        fail("nodes", _("A Slurm pool's nodes are its partition's: node '%(node)s' cannot "
                        "move into or out of one.", node=node.name))
    Node.update(pool=None if pool.is_default else pool).where(Node.id == node.id).execute()


PARTITION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def set_pool_slurm(pool, cluster, partition="", offered=None):
    """Make ``pool`` the Slurm pool of ``cluster``'s ``partition``, or (``cluster`` None) a
    Podman pool again. ``offered``: the partitions the cluster listed, None when it did not
    answer (the name typed is then taken as it is). Refused for the default pool, a pool
    with Podman nodes of its own, a partition another pool has, and while the pool has
    tasks waiting or running."""
    partition = (partition or "").strip() if cluster else ""
    if pool.is_default and cluster:
        fail("cluster", _("The default pool cannot be a Slurm pool: create a pool for the "
                          "partition."))
    if cluster and not PARTITION_RE.fullmatch(partition):
        fail("partition", _("A partition name is 1-128 letters, digits, '.', '_' or '-'."))
    if cluster and offered is not None and partition not in offered:
        fail("partition", _("Cluster '%(name)s' has no partition '%(partition)s'.",
                            name=cluster.name, partition=partition))
    if (pool.slurm_cluster_id, pool.partition) == (cluster.id if cluster else None, partition):
        return pool
    with database.atomic():  # the write first (see specs.save_named)
        (Pool.update(slurm_cluster=cluster, partition=partition)
         .where(Pool.id == pool.id).execute())
        if cluster and Node.select().where((Node.pool == pool)
                                           & Node.slurm_cluster.is_null()).exists():
            fail("cluster", _("Pool '%(name)s' has Podman nodes: move them to another pool "
                              "first.", name=pool.name))
        if cluster and Pool.select().where((Pool.slurm_cluster == cluster)
                                           & (Pool.partition == partition)
                                           & (Pool.id != pool.id)).exists():
            fail("partition", _("Partition '%(partition)s' of cluster '%(name)s' is already "
                                "another pool's.", partition=partition, name=cluster.name))
        busy = (Task.select().join(Replica)
                .where((Task.pool == pool) & Replica.state.not_in(REPLICA_ENDED))
                .distinct().count())
        if busy:
            fail("cluster", _("Pool '%(name)s' still has %(n)d task(s) waiting or running: "
                              "stop them first.", name=pool.name, n=busy))
        # unmapped, nothing would cancel a Slurm job that is not cancelled yet
        jobs = Task.select().where((Task.pool == pool) & Task.slurm_job.is_null(False)
                                   & ~Task.slurm_job_done).count()
        if jobs:
            fail("cluster", _("%(n)d Slurm job(s) of pool '%(name)s' are not cancelled yet: "
                              "Hourglass cancels them as soon as the cluster answers.",
                              name=pool.name, n=jobs))
    pool.slurm_cluster, pool.partition = cluster, partition
    return pool


def set_pool_groups(pool, group_ids):
    """Bind ``pool`` to exactly the groups with these ids (none: the default pool serves
    every renter, another pool nobody)."""
    with database.atomic():  # the write first (see specs.save_named)
        PoolGroup.delete().where(PoolGroup.pool == pool).execute()
        groups = list(Group.select().where(Group.id.in_(list(group_ids))))
        if len(groups) != len(set(group_ids)):
            fail(None, _("One of the chosen groups no longer exists: reload the page."))
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


def parse_run_minutes(value, field_name="max_run_minutes"):
    """A maximum run time as typed: empty (or None) is none, else whole minutes from 1 to
    MAX_RUN_MINUTES."""
    return values.checked(ResourceError, field_name, values.optional_whole_number, value, 1,
                          MAX_RUN_MINUTES, message=_("Enter whole minutes from 1 to %(n)d, or "
                                                     "leave it empty for no maximum run time.",
                                                     n=MAX_RUN_MINUTES))


def _limits_of(row):
    return PoolLimits(row.max_chips_per_user, row.max_replicas_per_user, row.cull_idle_minutes,
                      row.max_run_minutes)


def all_pool_limits():
    """{pool id: PoolLimits} of the pools that have any limit: one query."""
    return {row.pool_id: _limits_of(row) for row in PoolLimit.select()}


def pool_limits(pool):
    """The ``PoolLimits`` of ``pool`` (no row: no limits)."""
    row = PoolLimit.get_or_none(PoolLimit.pool == pool)
    return _limits_of(row) if row else PoolLimits()


def set_pool_limits(pool, **changes):
    """Set the limits named in ``changes`` (``max_chips_per_user``, ``max_replicas_per_user``,
    ``cull_idle_minutes``, ``max_run_minutes``: text as typed or an int; empty or None is no
    limit, or no culling);
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
            parse = {"cull_idle_minutes": parse_cull_minutes,
                     "max_run_minutes": parse_run_minutes}.get(name, parse_limit)
            parsed[name] = parse(value, name)
        except ResourceError as exc:
            errors.update(exc.errors)
    if errors:
        raise ResourceError(errors)
    if parsed:
        with database.atomic():  # the write first (see specs.save_named)
            (PoolLimit.insert(pool=pool, **parsed)
             .on_conflict(conflict_target=[PoolLimit.pool],
                          update={getattr(PoolLimit, name): v for name, v in parsed.items()})
             .execute())
            PoolLimit.delete().where((PoolLimit.pool == pool)
                                     & PoolLimit.max_chips_per_user.is_null()
                                     & PoolLimit.max_replicas_per_user.is_null()
                                     & PoolLimit.cull_idle_minutes.is_null()
                                     & PoolLimit.max_run_minutes.is_null()).execute()
    return pool_limits(pool)


