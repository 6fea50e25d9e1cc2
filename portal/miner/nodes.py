"""The miner's Nodes page: every Podman endpoint, whether it is Ready, its chips,
and what the miner decides about it (labels, cordon, drain, enabled). The node table
refreshes itself every 5 s: the page's URL answers the table alone when htmx asks for it
(``portal.presenters.page_or_partial``)."""

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from peewee import JOIN
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from portal import slurm
from portal.miner.blueprint import bp, get_or_404
from portal.models import Node, NodeChip, Pool, SlurmCluster
from portal.nodes import (
    NodeError,
    add_node,
    chips_by_node,
    labels_of,
    remove_node,
    set_flags,
    set_labels,
)
from portal.presenters import page_or_partial, partial_requested
from portal.signals import nodes_changed

FLAG_ACTIONS = {
    "cordon": {"cordoned": True},
    "uncordon": {"cordoned": False, "draining": False},
    "drain": {"draining": True},
    "enable": {"enabled": True},
    "disable": {"enabled": False},
}


class NodeForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=64)])
    url = StringField(_l("Podman API URL"), validators=[DataRequired(), Length(max=512)],
                      render_kw={"placeholder": "ssh://root@host/run/podman/podman.sock"})


class ClusterForm(FlaskForm):
    """A Slurm cluster (portal.slurm); its token is never filled in: empty keeps it."""

    name = StringField(_l("Name"), id="cluster-name")  # the Add a node form has "name"
    rest_url = StringField(_l("slurmrestd address"),
                           render_kw={"placeholder": "unix:///run/slurmrestd.sock"})
    user = StringField(_l("Slurm user (http(s) only)"))
    token = PasswordField(_l("JWT token (http(s) only; empty keeps the stored one)"))
    podman_url = StringField(_l("Podman on a compute node"),
                             default=slurm.DEFAULTS["podman_url"])
    host_root = StringField(_l("Host root of a compute node"),
                            default=slurm.DEFAULTS["host_root"])


@bp.get("/nodes")
def nodes():
    edit = request.args.get("cluster", type=int)
    return _page(editing=get_or_404(SlurmCluster, edit) if edit is not None else None)


def _page(form=None, cluster_form=None, editing=None):
    """The Nodes page, with ``form`` (adding a node) or ``cluster_form`` (adding or, with
    ``editing``, changing a Slurm cluster) as typed; the table alone for htmx."""
    nodes = list(Node.select(Node, Pool).join(Pool, JOIN.LEFT_OUTER).order_by(Node.name))
    clusters = list(SlurmCluster.select().order_by(SlurmCluster.name))
    return page_or_partial("miner/nodes.html", "miner/_node_table.html", nodes=nodes,
                           chips=chips_by_node(nodes), labels=labels_of,
                           form=form or NodeForm(formdata=None), clusters=clusters,
                           cluster_nodes=slurm.nodes_by_cluster(), shown_url=slurm.shown_url,
                           cluster_form=cluster_form or ClusterForm(formdata=None, obj=editing),
                           editing=editing, oob=partial_requested())


@bp.post("/nodes")
def add_node_view():
    form = NodeForm()
    if not form.validate():
        return _page(form), 400
    try:
        node = add_node(form.name.data, form.url.data)
    except NodeError as exc:
        form.url.errors.append(str(exc))
        return _page(form), 400
    nodes_changed.send(current_app._get_current_object())
    flash(_("Added node '%(name)s'; it is being discovered.", name=node.name), "success")
    return redirect(url_for("miner.node_page", node_id=node.id), 303)


@bp.get("/nodes/<int:node_id>")
def node_page(node_id):
    node = get_or_404(Node, node_id)
    chips = NodeChip.select().where(NodeChip.node == node).order_by(NodeChip.kind, NodeChip.index)
    labels_text = "\n".join(f"{k}={v}" for k, v in labels_of(node).items())
    return render_template("miner/node.html", node=node, chips=list(chips),
                           labels_text=request.form.get("labels", labels_text))


@bp.post("/nodes/<int:node_id>/labels")
def node_labels(node_id):
    node = get_or_404(Node, node_id)
    try:
        set_labels(node, request.form.get("labels", ""))
    except NodeError as exc:
        flash(str(exc), "error")
        return node_page(node_id), 400
    flash(_("Labels saved."), "success")
    return redirect(url_for("miner.node_page", node_id=node.id), 303)


@bp.post("/nodes/<int:node_id>/<action>")
def node_action(node_id, action):
    node = get_or_404(Node, node_id)
    if action == "remove":
        try:
            remove_node(node)
        except NodeError as exc:
            flash(str(exc), "error")
            return redirect(url_for("miner.node_page", node_id=node.id), 303)
        nodes_changed.send(current_app._get_current_object())
        flash(_("Removed node '%(name)s'.", name=node.name), "success")
        return redirect(url_for("miner.nodes"), 303)
    if action not in FLAG_ACTIONS:
        abort(404)
    set_flags(node, **FLAG_ACTIONS[action])
    if action in ("enable", "disable"):
        nodes_changed.send(current_app._get_current_object())
    back_to_list = request.form.get("back") == "list"
    return redirect(url_for("miner.nodes") if back_to_list
                    else url_for("miner.node_page", node_id=node.id), 303)
