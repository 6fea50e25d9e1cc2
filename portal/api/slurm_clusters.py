"""Slurm clusters (miner only, docs/slurm.md): list, add, change, remove. The JWT ``token``
is write-only: sent in a body to set it, never in an answer (``has_token`` says whether one
is stored); a change that leaves it out keeps it."""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import slurm
from portal.api.errors import ApiError, refusals
from portal.api.registry import route
from portal.api.resources import get_or_404
from portal.api.schema import Array, Boolean, Integer, Object, Record, String, iso
from portal.models import SlurmCluster
from portal.nodes import NAME

CLUSTER = Record({
    "id": Integer(),
    "name": String(),
    "rest_url": String(_l("slurmrestd: unix:///path or http(s)://host:port")),
    "user": String(_l("The Slurm user of the token (http(s) only)")),
    "has_token": Boolean(_l("Whether a JWT token is stored; the token itself is never sent "
                            "back")),
    "podman_url": String(_l("How Hourglass reaches Podman on a compute node; {node} and "
                            "{address} are filled in")),
    "host_root": String(_l("Where a compute node's devices are; {node} is filled in")),
    "nodes": Integer(_l("Nodes the cluster brought")),
    "pools": Array(String(), _l("Pools mapped to one of its partitions")),
    "created_at": String(format="date-time"),
}, name="SlurmCluster")

_FIELDS = {
    "name": String(_l("1-64 letters, digits, '.', '_' or '-'; unique (taken: 409)"),
                   min_length=1, max_length=64, pattern=NAME,
                   rule=_l("letters, digits, '.', '_' or '-'")),
    "rest_url": String(_l("unix:///path/to/socket (local authentication) or "
                          "http(s)://host[:port], without user, password, query or fragment"),
                       min_length=1, max_length=slurm.URL_MAX, pattern=slurm.REST_URL,
                       rule=_l("unix:///path or http(s)://host[:port]")),
    "user": String(_l("http(s) only: the Slurm user the token belongs to"), max_length=64,
                   pattern=f"(?:{slurm.USER})?", rule=_l("a Slurm user name")),
    "token": String(_l("http(s) only: a JWT (scontrol token); write-only, left out or empty "
                       "keeps the stored one"), max_length=8192,
                    pattern=f"(?:{slurm.TOKEN})?", rule=_l("printable text without spaces")),
    "podman_url": String(_l("unix://, ssh:// or tcp:// URL of Podman on a compute node; may "
                            "use {node} and {address}"), min_length=1,
                         max_length=slurm.URL_MAX, pattern=slurm.PODMAN_URL,
                         rule=_l("a unix://, ssh:// or tcp:// URL")),
    "host_root": String(_l("Absolute path of a compute node's root; may use {node}"),
                        min_length=1, max_length=slurm.URL_MAX, pattern=slurm.HOST_ROOT,
                        rule=_l("an absolute path")),
}
NEW_CLUSTER = Object(_FIELDS, required=("name", "rest_url"), name="NewSlurmCluster")
CLUSTER_CHANGE = Object(_FIELDS, name="SlurmClusterChange",
                        description=_l("Any of the fields; the others stay as they are"))


def cluster_json(cluster):
    return {
        "id": cluster.id, "name": cluster.name, "rest_url": slurm.shown_url(cluster.rest_url),
        "user": cluster.user, "has_token": bool(cluster.token),
        "podman_url": cluster.podman_url, "host_root": cluster.host_root,
        "nodes": slurm.nodes_by_cluster().get(cluster.id, 0),
        "pools": sorted(pool.name for pool in cluster.pools),
        "created_at": iso(cluster.created_at),
    }


def _cluster_or_404(cluster_id):
    return get_or_404(SlurmCluster, cluster_id,
                      _("There is no Slurm cluster %(id)d.", id=cluster_id))


@route("/slurm-clusters", summary=_l("Every Slurm cluster"), role="miner",
       response=Array(CLUSTER))
def list_slurm_clusters():
    return [cluster_json(c) for c in SlurmCluster.select().order_by(SlurmCluster.name)]


@route("/slurm-clusters/<int:cluster_id>", summary=_l("One Slurm cluster"), role="miner",
       response=CLUSTER)
def get_slurm_cluster(cluster_id):
    return cluster_json(_cluster_or_404(cluster_id))


@route("/slurm-clusters", "POST", summary=_l("Add a Slurm cluster"), role="miner",
       body=NEW_CLUSTER, response=CLUSTER, status=201)
def add_slurm_cluster_api(body):
    with refusals():
        return cluster_json(slurm.create_cluster(**body))


@route("/slurm-clusters/<int:cluster_id>", "PATCH",
       summary=_l("Change a Slurm cluster (a token left out stays)"), role="miner",
       body=CLUSTER_CHANGE, response=CLUSTER)
def update_slurm_cluster_api(cluster_id, body):
    cluster = _cluster_or_404(cluster_id)
    with refusals():
        return cluster_json(slurm.update_cluster(cluster, **body))


@route("/slurm-clusters/<int:cluster_id>", "DELETE",
       summary=_l("Remove a Slurm cluster and its nodes (while a pool maps one of its "
                  "partitions: 409)"), role="miner")
def delete_slurm_cluster_api(cluster_id):
    cluster = _cluster_or_404(cluster_id)
    try:
        slurm.remove_cluster(cluster)
    except slurm.ClusterError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
