"""The miner's Pools page: pools of whole nodes, the groups bound to them, the specs that fit,
and each pool's per-user limits, idle culling of notebooks and maximum run time.

The default pool always exists: it holds every node in no other pool and,
with no group bound, serves every renter. A limit left empty is no limit.
"""

from dataclasses import astuple

from flask import flash, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField

from portal import slurm, values
from portal.capacity import chip_kinds, node_capacities
from portal.miner.blueprint import bp, get_or_404, row_to_edit
from portal.models import Group, Node, Pool, SlurmCluster
from portal.pools import (
    LIMIT_FIELDS,
    MAX_CULL_MINUTES,
    MAX_LIMIT,
    MAX_RUN_MINUTES,
    create_pool,
    delete_pool,
    move_node,
    pool_views,
    set_pool_groups,
    set_pool_limits,
    set_pool_slurm,
    update_pool,
)
from portal.presenters import answer, button_post, done, form_post


class PoolForm(FlaskForm):
    name = StringField(_l("Name"))
    description = StringField(_l("Description"))


class LimitsForm(FlaskForm):
    """One pool's per-user limits; the page shows one per pool (inputs named alike, ids
    made unique by the template)."""

    max_chips_per_user = StringField(_l("Chips per renter"))
    max_replicas_per_user = StringField(_l("Running replicas per renter"))
    cull_idle_minutes = StringField(_l("Stop idle notebooks after (minutes)"))
    max_run_minutes = StringField(_l("Maximum run time of a task or notebook (minutes)"))


def _limits_form(view):
    shown = {name: "" if value is None else str(value)
             for name, value in zip(LIMIT_FIELDS, astuple(view.limits), strict=True)}
    return LimitsForm(formdata=None, data=shown)


def _page(form=None, editing=None, status=200, limits=None):
    """The page; ``limits`` is (pool id, LimitsForm) for a limits form that was refused."""
    nodes = node_capacities()
    views = pool_views(nodes)
    limit_forms = {view.pool.id: _limits_form(view) for view in views}
    if limits:
        limit_forms[limits[0]] = limits[1]
    clusters = list(SlurmCluster.select().order_by(SlurmCluster.name))
    return answer(
        "miner/pools.html", status,
        push=url_for("miner.pools", edit=editing.id if editing else None),
        pools=views, kinds=chip_kinds(n.capacity for n in nodes),
        groups=list(Group.select().order_by(Group.name)), limit_forms=limit_forms,
        max_limit=MAX_LIMIT, max_cull=MAX_CULL_MINUTES, max_run=MAX_RUN_MINUTES,
        form=form or PoolForm(formdata=None, obj=editing), editing=editing,
        clusters=clusters, partitions={c.id: slurm.partitions(c) for c in clusters},
    )


@bp.get("/pools")
def pools():
    return _page(editing=row_to_edit(Pool))


def _back(message):
    return done(message, url_for("miner.pools"))


def _refuse(message):
    flash(message, "error")
    return _page(status=400)


@bp.post("/pools")
def create_pool_view():
    return form_post(PoolForm, lambda form: create_pool(form.name.data, form.description.data),
                     lambda pool: _back(_("Created pool '%(name)s'.", name=pool.name)), _page)


@bp.post("/pools/<int:pool_id>")
def update_pool_view(pool_id):
    pool = get_or_404(Pool, pool_id)
    return form_post(
        PoolForm, lambda form: update_pool(pool, form.name.data, form.description.data),
        lambda _saved: _back(_("Saved pool '%(name)s'.", name=pool.name)),
        lambda form: _page(form, editing=Pool.get_by_id(pool_id)))


@bp.post("/pools/<int:pool_id>/delete")
def delete_pool_view(pool_id):
    pool = get_or_404(Pool, pool_id)
    return button_post(lambda: delete_pool(pool),
                       lambda _deleted: _back(_("Deleted pool '%(name)s'; its nodes are back "
                                                "in the default pool.", name=pool.name)),
                       lambda: _page(status=409))


@bp.post("/pools/<int:pool_id>/groups")
def set_pool_groups_view(pool_id):
    pool = get_or_404(Pool, pool_id)
    ids = [values.row_id(value) for value in request.form.getlist("groups")]
    if None in ids:
        return _refuse(_("Choose groups from the list."))
    return button_post(lambda: set_pool_groups(pool, set(ids)),
                       lambda _saved: _back(_("Groups of pool '%(name)s' saved.",
                                              name=pool.name)),
                       lambda: _page(status=400))


@bp.post("/pools/<int:pool_id>/limits")
def set_pool_limits_view(pool_id):
    pool = get_or_404(Pool, pool_id)
    return form_post(
        LimitsForm, lambda form: set_pool_limits(pool, **{name: form[name].data
                                                          for name in LIMIT_FIELDS}),
        lambda _saved: _back(_("Limits of pool '%(name)s' saved.", name=pool.name)),
        lambda form: _page(limits=(pool.id, form)))


@bp.post("/pools/<int:pool_id>/slurm")
def set_pool_slurm_view(pool_id):
    """Map the pool to a cluster's partition (offered when the cluster lists them), or clear
    it (no cluster chosen)."""
    pool = get_or_404(Pool, pool_id)
    chosen, cluster = request.form.get("cluster", ""), None
    if chosen:
        cluster = SlurmCluster.get_or_none(SlurmCluster.id == values.row_id(chosen))
        if cluster is None:
            return _refuse(_("Choose a Slurm cluster from the list."))
    offered = slurm.partitions(cluster)[0] if cluster else None
    return button_post(
        lambda: set_pool_slurm(pool, cluster, request.form.get("partition", ""), offered),
        lambda _saved: _back(_("Pool '%(name)s' is now a Slurm pool of partition "
                               "'%(partition)s'.", name=pool.name, partition=pool.partition)
                             if cluster else _("Pool '%(name)s' is a Podman pool.",
                                               name=pool.name)),
        lambda: _page(status=400))


@bp.post("/pools/nodes/<int:node_id>")
def move_node_view(node_id):
    node = get_or_404(Node, node_id)
    pool_id = values.row_id(request.form.get("pool"))
    pool = Pool.get_or_none(Pool.id == pool_id) if pool_id else None
    if pool is None:
        return _refuse(_("Choose a pool from the list."))
    return button_post(lambda: move_node(node, pool),
                       lambda _moved: _back(_("Node '%(node)s' is now in pool '%(pool)s'.",
                                              node=node.name, pool=pool.name)),
                       lambda: _page(status=400))
