"""Grafana, when the lab has one (``GRAFANA_URL`` and ``GRAFANA_TOKEN``, a service-account
token with the Admin role: data sources need it).

``provision`` creates or updates through grafana-client the Prometheus data source Hourglass
reads and its two dashboards (``grafana_dashboards/``: the cluster, and a training task with
a ``task`` variable) in a folder "Hourglass", each by a fixed uid: running it again updates,
never duplicates. The scheduler's leader does it once per process (``keep_provisioned``,
among its chores) and ``flask --app app grafana provision`` does it at once; a Grafana that
is down or refuses is logged or reported, and the portal works on without it.

``panels`` gives the embed URLs of a dashboard's panels for the miner's pages, and lets that
page alone frame Grafana's origin (``security_headers.allow``): the miner signs in to Grafana
in the frame (Hourglass never turns on anonymous access), and the token never leaves the
server. A Grafana on the portal's own origin is not embedded: a frame sandboxed with
allow-scripts and allow-same-origin could reach the portal's pages.
"""

import functools
import json
import logging
import re
from importlib import resources
from urllib.parse import urlencode, urlsplit

import click
import niquests
from flask import current_app
from flask.cli import AppGroup
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
    TokenAuth,
)

from portal import prometheus_stack, security_headers, values
from portal.proxy import urls

log = logging.getLogger(__name__)

DATASOURCE_UID = "hourglass-prometheus"
DATASOURCE_NAME = "Hourglass Prometheus"
FOLDER_UID = "hourglass"
FOLDER_TITLE = "Hourglass"
DASHBOARDS = ("cluster", "task")  # grafana_dashboards/<name>.json, uid "hourglass-<name>"
TIMEOUT = 10.0  # seconds for each request to Grafana
# What every embedded panel shows: the last hour, refreshed every 30 s.
EMBED = {"from": "now-1h", "to": "now", "refresh": "30s", "theme": "light"}
PROVISIONED = "hourglass.grafana_provisioned"  # app.extensions key: done in this process
SAME_ORIGIN_WARNED = "hourglass.grafana_same_origin"  # app.extensions key: warned once
DEFAULT_PORTS = {"http": 80, "https": 443}


class GrafanaError(RuntimeError):
    """Provisioning failed; the message says why (never with the token)."""


class Embed(str):
    """An embed URL that also knows its panel's ``title`` (the frame's title) and the
    ``dashboard`` it is from (to open it whole in Grafana, where the miner may sign in)."""

    def __new__(cls, url, title, dashboard):
        embed = super().__new__(cls, url)
        embed.title, embed.dashboard = title, dashboard
        return embed


def configured(app):
    """Whether the lab has a Grafana for Hourglass: both GRAFANA_URL and GRAFANA_TOKEN set."""
    return bool(app.config["GRAFANA_URL"] and app.config["GRAFANA_TOKEN"])


def base_url(app):
    """GRAFANA_URL as a browser may see it: without any ``user:password@``."""
    return values.shown_url(app.config["GRAFANA_URL"])


def origin(app):
    """GRAFANA_URL's origin (for the Content-Security-Policy's frame-src)."""
    parts = urlsplit(base_url(app))
    return f"{parts.scheme}://{parts.netloc}"


def _same_origin(first, second):
    """Whether two URLs have one origin (scheme, host, port; default ports filled in)."""
    def key(url):
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname,
                parts.port or DEFAULT_PORTS.get(parts.scheme))
    return key(first) == key(second)


@functools.cache
def dashboard(name):
    """The dashboard model ``name`` ("cluster" or "task") as provisioned."""
    path = resources.files("portal") / "grafana_dashboards" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _slug(title):
    """Grafana's slug of an (ASCII) dashboard title: "Hourglass task" -> "hourglass-task"."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def dashboard_url(app, name, solo=False):
    """Where dashboard ``name`` opens in Grafana (``solo``: one panel, for a frame)."""
    board = dashboard(name)
    return f"{base_url(app)}/{'d-solo' if solo else 'd'}/{board['uid']}/{_slug(board['title'])}"


def panels(dashboard_name, **variables):
    """Embed URLs (``Embed``) of the panels of ``dashboard_name`` ("cluster", or "task" with
    ``task=<id>``: the dashboard's variables, all of them), in the dashboard's order, and
    this answer's frame-src widened to Grafana's origin; ``[]`` when no Grafana is
    configured, or when it is on the portal's own origin (a warning, once). Needs a request."""
    app = current_app
    if not configured(app):
        return []
    if _same_origin(origin(app), urls.origin()):
        if not app.extensions.get(SAME_ORIGIN_WARNED):
            app.extensions[SAME_ORIGIN_WARNED] = True
            log.warning("Grafana's panels are not embedded: GRAFANA_URL %s is on the portal's "
                        "own origin, where a Grafana frame could reach the portal's pages; "
                        "serve Grafana on an origin of its own.", base_url(app))
        return []
    board = dashboard(dashboard_name)
    names = {variable["name"] for variable in board["templating"]["list"]}
    if set(variables) != names:
        raise ValueError(f"dashboard {dashboard_name!r} takes the variables {sorted(names)}")
    solo = dashboard_url(app, dashboard_name, solo=True)
    chosen = [(f"var-{name}", value) for name, value in variables.items()]
    whole = f"{dashboard_url(app, dashboard_name)}?" + urlencode([("orgId", 1), *chosen,
                                                                  *EMBED.items()])
    security_headers.allow("frame-src", origin(app))
    return [Embed(f"{solo}?" + urlencode([("orgId", 1), ("panelId", panel["id"]), *chosen,
                                          *EMBED.items()]), panel["title"], whole)
            for panel in board["panels"]]


def provision(app, timeout=TIMEOUT):
    """Create or update the data source, the folder and both dashboards in the lab's Grafana;
    returns what was done, a line each. Raises GrafanaError when Grafana is not configured,
    there is no Prometheus to point it at, or Grafana cannot be reached or refuses."""
    if not configured(app):
        raise GrafanaError("Grafana is not configured: set GRAFANA_URL and GRAFANA_TOKEN.")
    prometheus = prometheus_stack.prometheus_url(app)
    if not prometheus:
        raise GrafanaError("There is no Prometheus for Grafana to read: set PROMETHEUS_URL "
                           "or run `make monitoring`.")
    api = GrafanaApi.from_url(app.config["GRAFANA_URL"],
                              credential=TokenAuth(app.config["GRAFANA_TOKEN"]), timeout=timeout)
    try:
        done = [_datasource(api, prometheus)]
        folder = _folder(api)
        for name in DASHBOARDS:
            board = dashboard(name)
            api.dashboard.update_dashboard({
                "dashboard": {**board, "id": None},
                "folderUid": folder,
                "overwrite": True,
                "message": "Provisioned by Hourglass",
            })
            done.append(f"Dashboard {board['title']}: {dashboard_url(app, name)}")
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise GrafanaError(_explain(exc, base_url(app), timeout)) from None
    finally:
        api.client.s.close()
    return done


def _datasource(api, url):
    """Create the data source, or update it (its uid is fixed); what was done."""
    body = {"uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": "prometheus",
            "access": "proxy", "url": url, "isDefault": False,
            "jsonData": {"httpMethod": "POST"}}
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(body)
        return f"Data source {DATASOURCE_NAME} created, reading {values.shown_url(url)}."
    api.datasource.update_datasource_by_uid(DATASOURCE_UID, body)
    return f"Data source {DATASOURCE_NAME} updated, reading {values.shown_url(url)}."


def _folder(api):
    """The uid of the folder "Hourglass": ours, one of that title made by hand, or a new one."""
    folders = api.folder.get_all_folders()
    found = ([folder for folder in folders if folder.get("uid") == FOLDER_UID]
             or [folder for folder in folders if folder.get("title") == FOLDER_TITLE])
    if found:
        return found[0]["uid"]
    return api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)["uid"]


def _explain(exc, where, timeout):
    """A sentence for the miner on what went wrong with Grafana at ``where``."""
    if isinstance(exc, GrafanaUnauthorizedError):
        return (f"Grafana at {where} refused GRAFANA_TOKEN (401): give the token of a service "
                f"account with the Admin role.")
    if isinstance(exc, GrafanaTimeoutError):
        return f"Grafana at {where} did not answer within {timeout:g} s."
    if isinstance(exc, GrafanaClientError) and exc.status_code == 403:
        return (f"Grafana at {where} did not allow it (403): the service account needs the "
                f"Admin role.")
    if isinstance(exc, GrafanaException):
        return f"Grafana at {where} failed: {exc.message}"
    return f"Grafana at {where} cannot be reached: {exc}"


def keep_provisioned(app, timeout=TIMEOUT):
    """The leader's chore: provision once per process while Grafana is configured. A failure
    is logged and the next run tries again; it never raises (the portal needs no Grafana)."""
    if not configured(app) or app.extensions.get(PROVISIONED):
        return
    try:
        done = provision(app, timeout)
    except GrafanaError as exc:
        log.warning("Grafana provisioning failed: %s", exc)
        return
    app.extensions[PROVISIONED] = True
    log.info("Grafana provisioned: %s", " ".join(done))


grafana_cli = AppGroup("grafana", help="The lab's Grafana (GRAFANA_URL, GRAFANA_TOKEN).")


@grafana_cli.command("provision")
def provision_command():
    """Create or update Hourglass's data source and dashboards in Grafana now."""
    try:
        done = provision(current_app)
    except GrafanaError as exc:
        raise click.ClickException(str(exc)) from None
    for line in done:
        click.echo(line)
