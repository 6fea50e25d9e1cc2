"""Slurm clusters as the portal sees them (docs/slurm.md): the miner adds, changes and
removes them here, checked. The client of a cluster's slurmrestd is the scheduler's
(``app.extensions["hourglass.slurm"]``, a callable ``client_for(cluster)``); it raises
``SlurmError`` with a sentence for the miner.

A cluster's JWT ``token`` is write-only: no page or API answer carries it, and a change
that leaves it empty keeps the one stored."""

import re
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _
from peewee import IntegrityError, fn

from portal import values
from portal.db import database
from portal.ledger import forget_node
from portal.models import Node, Replica, SlurmCluster
from portal.nodes import NAME_RE
from portal.nodes import URL_RE as PODMAN_URL_RE
from portal.references import InUse, delete_unused


class SlurmError(Exception):
    """slurmrestd could not be reached, refused us, or answered with Slurm's errors."""


class ClusterError(values.FieldErrors):
    """Bad input for a Slurm cluster, or a refused change, field by field."""


# Pattern bodies (``portal.values``), matched whole: the API document carries them too.
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}" \
        r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])"
REST_URL = (r"unix:///[A-Za-z0-9._~+,=@/-]*"
            rf"|https?://{_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._~+,=@/-]*)?")
USER = r"[A-Za-z_][A-Za-z0-9_.-]{0,63}"
TOKEN = r"[!-~]{1,8192}"  # a JWT: printable ASCII, no spaces
PODMAN_URL = r"(?:unix|ssh|tcp)://[!#-&(-;=?-~]+"  # as portal.nodes.URL, {node} {address} in it
HOST_ROOT = r"/[!#-&(-;=?-~]*"
URL_MAX = 512
REST_URL_RE, USER_RE, TOKEN_RE = re.compile(REST_URL), re.compile(USER), re.compile(TOKEN)
HOST_ROOT_RE = re.compile(HOST_ROOT)
FIELDS = ("name", "rest_url", "user", "token", "podman_url", "host_root")
DEFAULTS = {"user": "", "token": "", "podman_url": SlurmCluster.podman_url.default,
            "host_root": SlurmCluster.host_root.default}
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def is_unix(rest_url):
    return rest_url.startswith("unix://")


def shown_url(rest_url):
    """``rest_url`` as pages and the API show it: without user, password, query or fragment
    (the rules refuse them; a row from before them is shown safely all the same)."""
    parts = urlsplit(rest_url)
    if is_unix(rest_url):
        return f"unix://{parts.path}"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _template(value, allowed, pattern, message, field, errors):
    """A template holding only the ``allowed`` placeholders and, filled in, matching
    ``pattern``; else ``message`` on ``field`` in ``errors``."""
    names = set(PLACEHOLDER_RE.findall(value))
    bare = PLACEHOLDER_RE.sub("x", value)
    if (len(value) > URL_MAX or not names <= set(allowed) or "{" in bare or "}" in bare
            or not pattern.fullmatch(bare)):
        errors[field] = message


def _port_ok(rest_url):
    try:
        return urlsplit(rest_url).port != 0
    except ValueError:  # a port over 65535
        return False


def check_cluster(fields, stored_token=""):
    """``fields`` (every name of ``FIELDS``, text as typed) checked: the values to store,
    the token kept from ``stored_token`` when none is typed; all errors raised together."""
    clean = {key: (fields.get(key) or "").strip() for key in FIELDS}
    errors = {}
    if not NAME_RE.fullmatch(clean["name"]):
        errors["name"] = _("A cluster name is 1-64 letters, digits, '.', '_' or '-'.")
    rest_url = clean["rest_url"]
    if len(rest_url) > URL_MAX or not REST_URL_RE.fullmatch(rest_url) or not _port_ok(rest_url):
        errors["rest_url"] = _("The slurmrestd address must be unix:///path/to/socket or "
                               "http(s)://host[:port], with no user, password, query or "
                               "fragment in it.")
    elif is_unix(rest_url):
        for key in ("user", "token"):
            if clean[key]:
                errors[key] = _("A unix socket uses Slurm's local authentication: leave the "
                                "user and the token empty.")
        stored_token = ""
    else:
        if not USER_RE.fullmatch(clean["user"]):
            errors["user"] = _("Give the Slurm user that the token belongs to (letters, "
                               "digits, '.', '_' or '-').")
        if clean["token"] and not TOKEN_RE.fullmatch(clean["token"]):
            errors["token"] = _("The token is printable text without spaces, at most 8192 "
                                "characters.")
        elif not clean["token"] and not stored_token:
            errors["token"] = _("An http(s) slurmrestd needs a JWT token (scontrol token).")
    clean["token"] = clean["token"] or stored_token
    _template(clean["podman_url"], ("node", "address"), PODMAN_URL_RE,
              _("The Podman address of a compute node must be a unix://, ssh:// or tcp:// URL; "
                "it may hold {node} and {address}, nothing else in braces."),
              "podman_url", errors)
    root = clean["host_root"]
    _template(root, ("node",), HOST_ROOT_RE,
              _("The host root must be an absolute path; it may hold {node}, nothing else in "
                "braces."), "host_root", errors)
    if ".." in root.split("/"):
        errors["host_root"] = _("The host root must be an absolute path; it may hold {node}, "
                                "nothing else in braces.")
    if errors:
        raise ClusterError(errors)
    return clean


def _save(cluster, fields):
    for key, value in fields.items():
        setattr(cluster, key, value)
    try:
        with database.atomic():
            cluster.save()
    except IntegrityError:  # the unique name
        raise ClusterError({"name": _("The name '%(name)s' is taken.",
                                      name=cluster.name)}) from None
    return cluster


def create_cluster(**fields):
    """Add a Slurm cluster from ``fields`` (``FIELDS``; those left out take their default)."""
    return _save(SlurmCluster(), check_cluster({**DEFAULTS, **fields}))


def update_cluster(cluster, **changes):
    """Change the fields named in ``changes``; the others, and the token when none is
    given, stay."""
    current = {key: getattr(cluster, key) for key in FIELDS if key != "token"}
    return _save(cluster, check_cluster({**current, **changes}, stored_token=cluster.token))


def remove_cluster(cluster):
    """Remove a cluster and the nodes it brought. Refused (ClusterError) while a pool maps
    one of its partitions or a replica runs on one of its nodes."""
    nodes = list(Node.select().where(Node.slurm_cluster == cluster))
    busy = Replica.select().where(Replica.node.in_(nodes)
                                  & Replica.state.in_(("starting", "running"))).count()
    if busy:
        raise ClusterError({None: _("Cluster '%(name)s' still runs %(n)d replica(s): stop them "
                                    "first.", name=cluster.name, n=busy)})
    try:
        with database.atomic():
            for node in nodes:  # their chips go with them; replicas and charges keep no node
                delete_unused(node)
                forget_node(node.id)
            delete_unused(cluster)
    except InUse as exc:
        raise ClusterError({None: str(exc)}) from None


PAGE_TIMEOUT = 3  # seconds a page waits for slurmrestd (the Pools page asks each cluster)


def client(cluster):
    """The scheduler's slurmrestd client for ``cluster``, as patient as a page can be;
    SlurmError when none runs here."""
    client_for = current_app.extensions.get("hourglass.slurm")
    if client_for is None:
        raise SlurmError(_("This Hourglass runs no Slurm client: is the Slurm backend "
                           "installed?"))
    return client_for(cluster, timeout=PAGE_TIMEOUT)


def check_connection(cluster):
    """None when the cluster's slurmrestd answers a ping, else the SlurmError's sentence."""
    try:
        client(cluster).ping()
    except SlurmError as exc:
        return str(exc)
    return None


def partitions(cluster):
    """(the partition names slurmrestd lists, None) or (None, SlurmError's sentence)."""
    try:
        return sorted(client(cluster).partitions()), None
    except SlurmError as exc:
        return None, str(exc)


def nodes_by_cluster():
    """{cluster id: number of nodes it brought}, one query."""
    return dict(Node.select(Node.slurm_cluster, fn.COUNT(Node.id))
                .where(Node.slurm_cluster.is_null(False)).group_by(Node.slurm_cluster).tuples())

