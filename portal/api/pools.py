"""Resource pools: the miner sees and writes them all, with their nodes and groups; a renter
sees the pools they may use (``open_pools``), with capacity and the specs that fit.

A pool's groups are sent as group names and replace the old set; its ``nodes``
are node ids to move into it (a node leaves a pool by moving into another,
such as the default pool). Its ``limits`` are the per-user limits (null: none);
a change sets the limits it names and leaves the other as it was. Renters see
the limits too: they are the ones their tasks wait on.
"""

from dataclasses import asdict

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import pools, slurm, users
from portal.access import open_pools
from portal.api.auth import api_user
from portal.api.errors import ApiError, refusals, refused
from portal.api.registry import route
from portal.api.resources import DESCRIPTION, MAX_ID, REF, get_or_404, ref
from portal.api.schema import Array, Boolean, Integer, Map, Name, Object, Record, String
from portal.db import database
from portal.models import Group, Node, Pool, SlurmCluster
from portal.pools import LIMIT_FIELDS, MAX_CULL_MINUTES, MAX_LIMIT, MAX_RUN_MINUTES
from portal.units import NAME_MAX

MAX_ITEMS = 1000  # groups or nodes in one request

_LIMITS = {
    "max_chips_per_user": Integer(_l("Chips (all kinds together) one renter may hold at once "
                                     "in the pool; null: no limit"),
                                  nullable=True, minimum=0, maximum=MAX_LIMIT),
    "max_replicas_per_user": Integer(_l("Replicas one renter may have starting or running at "
                                        "once in the pool; null: no limit"),
                                     nullable=True, minimum=0, maximum=MAX_LIMIT),
    "cull_idle_minutes": Integer(_l("A notebook in the pool idle (no busy kernel, no activity) "
                                    "this many minutes is stopped; null: never"),
                                 nullable=True, minimum=1, maximum=MAX_CULL_MINUTES),
    "max_run_minutes": Integer(_l("A task or notebook in the pool running this many minutes is "
                                  "stopped; renters may choose less; null: no maximum"),
                               nullable=True, minimum=1, maximum=MAX_RUN_MINUTES),
}
LIMITS = Record(_LIMITS, name="PoolLimits")
LIMITS_CHANGE = Object(_LIMITS, name="PoolLimitsChange",
                       description=_l("Any of the limits; one left out stays as it is"))

POOL = Object({
    "id": Integer(),
    "name": String(),
    "description": String(),
    "is_default": Boolean(_l("Holds every node in no other pool")),
    "capacity": Map(Integer(), _l("Total of its nodes: cpu in millicores, memory in MiB, "
                                  "chips per system resource kind")),
    "specs": Array(REF, _l("Specs some schedulable node of the pool can hold; for a renter, "
                           "the enabled ones")),
    "groups": Array(String(), _l("Miner only: the bound groups. None: the default pool serves "
                                 "every renter, another pool nobody")),
    "nodes": Array(REF, _l("Miner only: its nodes")),
    "limits": LIMITS,
    "slurm": Object({"cluster": String(), "partition": String()},
                    required=("cluster", "partition"), name="PoolSlurm", nullable=True,
                    description=_l("Miner only: the Slurm cluster and partition whose nodes "
                                   "the pool is (Slurm places its tasks); null: a Podman "
                                   "pool")),
}, required=("id", "name", "description", "is_default", "capacity", "specs", "limits"),
    name="Pool")
SLURM_CHANGE = Object({
    "cluster": String(_l("The Slurm cluster's name (an unknown one: 409)"), min_length=1,
                      max_length=64),
    "partition": String(_l("One of its partitions; another pool's: 409"), min_length=1,
                        max_length=128, pattern=pools.PARTITION_RE.pattern,
                        rule=_l("letters, digits, '.', '_' or '-'")),
}, required=("cluster", "partition"), name="PoolSlurmChange", nullable=True,
    description=_l("Map the pool to a Slurm partition (not the default pool, nor a pool with "
                   "Podman nodes); null makes it a Podman pool again"))

POOL_FIELDS = {
    "name": Name(NAME_MAX["pool"], _l("Unique; the default pool keeps its name")),
    "description": DESCRIPTION,
    "groups": Array(String(min_length=2, max_length=32, pattern=users.NAME_RE.pattern,
                           rule=_l("a group name")),
                    _l("Names of the groups to bind (an unknown one: 409); replaces the old "
                       "set"), max_items=MAX_ITEMS),
    "nodes": Array(Integer(minimum=1, maximum=MAX_ID),
                   _l("Ids of nodes to move into the pool (an unknown one: 409)"),
                   max_items=MAX_ITEMS),
    "limits": LIMITS_CHANGE,
    "slurm": SLURM_CHANGE,
}
NEW_POOL = Object(POOL_FIELDS, required=("name",), name="NewPool")
POOL_CHANGE = Object(POOL_FIELDS, name="PoolChange",
                     description=_l("Any of the fields; the others stay as they are"))


def pool_json(view, miner):
    out = {"id": view.pool.id, "name": view.pool.name, "description": view.pool.description,
           "is_default": view.pool.is_default, "capacity": view.capacity,
           "specs": [ref(s.spec) for s in view.specs if miner or s.spec.enabled],
           "limits": asdict(view.limits)}
    if miner:
        out["groups"] = [group.name for group in view.groups]
        out["nodes"] = [ref(item.node) for item in view.nodes]
        pool = view.pool
        out["slurm"] = ({"cluster": pool.slurm_cluster.name, "partition": pool.partition}
                        if pool.slurm_cluster_id else None)
    return out


def _visible():
    """(PoolViews the caller may see, whether the caller is the miner)."""
    user = api_user()
    views = pools.pool_views()
    if user.role == "miner":
        return views, True
    return open_pools(user, views), False


def _one(pool_id):
    views, miner = _visible()
    for view in views:
        if view.pool.id == pool_id:
            return pool_json(view, miner)
    raise ApiError(404, "not_found", _("There is no pool %(id)d you may use.", id=pool_id))


@route("/pools", summary=_l("Pools: all of them for the miner, those you may use for a renter"),
       response=Array(POOL))
def list_pools():
    views, miner = _visible()
    return [pool_json(view, miner) for view in views]


@route("/pools/<int:pool_id>", summary=_l("One pool (a renter sees only those they may use)"),
       response=POOL)
def get_pool(pool_id):
    return _one(pool_id)


def _group_ids(names):
    """Ids of the groups named ``names``; an unknown name is 409."""
    found = dict(Group.select(Group.name, Group.id).where(Group.name.in_(names)).tuples())
    unknown = [name for name in names if name not in found]
    if unknown:
        message = _("There is no group '%(name)s'.", name=unknown[0])
        raise refused(message, {"groups": message})
    return {found[name] for name in names}


def _nodes(ids):
    """The nodes with these ids; an unknown id is 409."""
    nodes = list(Node.select().where(Node.id.in_(ids))) if ids else []
    missing = sorted(set(ids) - {node.id for node in nodes})
    if missing:
        message = _("There is no node %(id)d.", id=missing[0])
        raise refused(message, {"nodes": message})
    return nodes


def _slurm(change):
    """(cluster, partition, the partitions it lists or None) of a ``slurm`` change; an
    unknown cluster is 409."""
    if change is None:
        return None, "", None
    cluster = SlurmCluster.get_or_none(SlurmCluster.name == change["cluster"])
    if cluster is None:
        message = _("There is no Slurm cluster '%(name)s'.", name=change["cluster"])
        raise refused(message, {"slurm.cluster": message})
    return cluster, change["partition"], slurm.partitions(cluster)[0]


def _save(pool, body):
    """Create (``pool`` None) or change a pool from ``body``; all of it or nothing."""
    group_ids = _group_ids(body["groups"]) if "groups" in body else None
    nodes = _nodes(body.get("nodes", []))
    mapping = _slurm(body["slurm"]) if "slurm" in body else None
    rename = {name: f"limits.{name}" for name in LIMIT_FIELDS}
    rename.update({"cluster": "slurm.cluster", "partition": "slurm.partition"})
    with refusals(rename), database.atomic():
        if pool is None:
            pool = pools.create_pool(body["name"], body.get("description", ""))
        elif "name" in body or "description" in body:
            pools.update_pool(pool, body.get("name", pool.name),
                              body.get("description", pool.description))
        if group_ids is not None:
            pools.set_pool_groups(pool, group_ids)
        if "limits" in body:
            pools.set_pool_limits(pool, **body["limits"])
        for node in nodes:
            pools.move_node(node, pool)
        if mapping is not None:
            pools.set_pool_slurm(pool, *mapping)
    return _one(pool.id)


@route("/pools", "POST", summary=_l("Create a pool, maybe with groups and nodes"), role="miner",
       body=NEW_POOL, response=POOL, status=201)
def create_pool_api(body):
    return _save(None, body)


@route("/pools/<int:pool_id>", "PATCH",
       summary=_l("Change a pool: name, description, groups, nodes to move into it, limits"),
       role="miner", body=POOL_CHANGE, response=POOL)
def update_pool_api(pool_id, body):
    return _save(_pool_or_404(pool_id), body)


@route("/pools/<int:pool_id>", "DELETE",
       summary=_l("Delete a pool; its nodes return to the default pool (the default pool: 409)"),
       role="miner")
def delete_pool_api(pool_id):
    with refusals():
        pools.delete_pool(_pool_or_404(pool_id))


def _pool_or_404(pool_id):
    return get_or_404(Pool, pool_id, _("There is no pool %(id)d.", id=pool_id))
