"""The Slurm clusters on the miner's Nodes page (docs/slurm.md): add, change, remove, and
test whether a cluster's slurmrestd answers. The token is never shown back."""

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from markupsafe import escape

from portal import slurm
from portal.miner.blueprint import bp, get_or_404
from portal.miner.nodes import ClusterForm, _page
from portal.models import SlurmCluster
from portal.presenters import button_post, done, form_post


def _fields(form):
    return {name: form[name].data for name in slurm.FIELDS}


def _back(message):
    return done(message, url_for("miner.nodes") + "#slurm-clusters")


@bp.post("/slurm-clusters")
def add_slurm_cluster_view():
    return form_post(ClusterForm, lambda form: slurm.create_cluster(**_fields(form)),
                     lambda cluster: _back(_("Added Slurm cluster '%(name)s'.",
                                             name=cluster.name)),
                     lambda form: _page(cluster_form=form))


@bp.post("/slurm-clusters/<int:cluster_id>")
def update_slurm_cluster_view(cluster_id):
    cluster = get_or_404(SlurmCluster, cluster_id)
    return form_post(ClusterForm, lambda form: slurm.update_cluster(cluster, **_fields(form)),
                     lambda saved: _back(_("Saved Slurm cluster '%(name)s'.", name=saved.name)),
                     lambda form: _page(cluster_form=form,
                                        editing=SlurmCluster.get_by_id(cluster_id)))


@bp.post("/slurm-clusters/<int:cluster_id>/delete")
def delete_slurm_cluster_view(cluster_id):
    cluster = get_or_404(SlurmCluster, cluster_id)
    return button_post(lambda: slurm.remove_cluster(cluster),
                       lambda _removed: _back(_("Removed Slurm cluster '%(name)s' and its nodes.",
                                                name=cluster.name)),
                       lambda: (_page(), 409))


@bp.post("/slurm-clusters/<int:cluster_id>/test")
def test_slurm_cluster_view(cluster_id):
    """htmx gets the answer alone, in place; a plain form post gets it flashed."""
    cluster = get_or_404(SlurmCluster, cluster_id)
    problem = slurm.check_connection(cluster)
    if request.headers.get("HX-Request"):
        if problem is None:
            return f'<span class="badge ok">{escape(_("ok"))}</span>'
        return f'<small class="error-text">{escape(problem)}</small>'
    if problem is None:
        flash(_("Slurm cluster '%(name)s' answers.", name=cluster.name), "success")
    else:
        flash(problem, "error")
    return redirect(url_for("miner.nodes") + "#slurm-clusters", 303)
