"""What a renter may use: the pools open to their groups and the enabled specs that fit
one of those pools. Pages, the API and a submission's check ask the same question here.
"""

from peewee import JOIN, fn

from portal.db import Prepared, model_row
from portal.models import Membership, Pool, PoolGroup
from portal.pools import pool_views


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

