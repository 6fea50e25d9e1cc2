"""The Prometheus Hourglass reads: ``PROMETHEUS_URL``, else the one ``flask monitoring run``
(``make monitoring``) runs for this instance beside node-exporter, from a generated config.

The instance's ``monitoring`` folder holds ``prometheus.yml``, ``nodes.json`` (node-exporter
of every node, which Prometheus rereads by itself as it changes), ``data/`` (the storage),
the logs and, while the stack runs, ``prometheus.url``. Child processes get argv lists only,
a minimal environment (never the portal's secrets), and end when the process that started
them ends, even by SIGKILL.
"""

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests
from flask.cli import AppGroup
from peewee import DatabaseError, InterfaceError

from portal import db, processes
from portal.models import Node

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_SECONDS = 60  # how long Prometheus may take to replay its storage and get ready
STOP_SECONDS = 15


def folder(app):
    """The instance's ``monitoring`` folder (created)."""
    path = Path(app.instance_path) / "monitoring"
    path.mkdir(exist_ok=True)
    return path


def prometheus_url(app):
    """The base URL of the Prometheus to query, or "" when there is none: ``PROMETHEUS_URL``,
    else the one ``monitoring run`` keeps for this instance while its process lives (the
    file names that process, so one killed with SIGKILL leaves no URL behind, and a process
    that got its pid later, after a reboot say, is no ``monitoring run``)."""
    if app.config["PROMETHEUS_URL"]:
        return app.config["PROMETHEUS_URL"]
    try:
        url, pid = (Path(app.instance_path) / "monitoring" / "prometheus.url").read_text().split()
        argv = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):  # no file, a file of another form, or its process is gone
        return ""
    ours = any(argv[i:i + 2] == [b"monitoring", b"run"] for i in range(len(argv)))
    return url if ours else ""  # a zombie's cmdline is empty


def host_port(host, port):
    """``host:port`` for a scrape target, brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hourglass_host():
    """The host Prometheus scrapes Hourglass at: HOST, loopback when HOST is a wildcard
    (Hourglass admits loopback scrapers by default)."""
    host = os.environ.get("HOST", LOOPBACK).strip("[]")
    return {"": LOOPBACK, "0.0.0.0": LOOPBACK, "::": "::1"}.get(host, host)


def hourglass_target(app):
    """Where this instance's /metrics answers: ``hourglass_host()``:PORT."""
    return host_port(hourglass_host(), app.config["PORT"])


def scrape_refused(app):
    """Why /metrics will answer Prometheus 401 (no HOURGLASS_METRICS_TOKEN while it does not
    scrape from loopback, or loopback scrapers are not admitted); "" when it will not."""
    if app.config["METRICS_TOKEN"]:
        return ""
    host = hourglass_host()
    try:
        loopback = ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = host == "localhost"
    if not loopback:
        return (f"HOST is {host}, not a loopback address, so Prometheus scrapes Hourglass's "
                "/metrics there and gets 401 without a token")
    if not app.config["METRICS_LOOPBACK"]:
        return ("HOURGLASS_METRICS_LOOPBACK is off, so Hourglass's /metrics answers "
                "Prometheus 401 without a token")
    return ""


def duration(seconds):
    """``seconds`` as a Prometheus duration (whole milliseconds, at least 1 s)."""
    millis = max(1000, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def config(app):
    """The ``prometheus.yml`` settings: Hourglass's /metrics and the nodes' node-exporter,
    every SAMPLE_SECONDS. A metrics token goes in a file of its own, never in the config."""
    path = folder(app)
    interval = duration(app.config["SAMPLE_SECONDS"])
    hourglass = {"job_name": "hourglass", "static_configs": [{"targets": [hourglass_target(app)]}]}
    token = path / "metrics_token"
    if app.config["METRICS_TOKEN"]:
        _write(token, app.config["METRICS_TOKEN"], mode=0o600)
        hourglass["authorization"] = {"credentials_file": str(token)}
    else:
        token.unlink(missing_ok=True)
    nodes = {"job_name": "node", "file_sd_configs": [{"files": [str(path / "nodes.json")]}]}
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [hourglass, nodes]}


def node_targets(app):
    """file_sd target groups: node-exporter of each node with an address (the portal's own
    node on loopback; a node not yet discovered at its URL's host), labelled node=<its
    name>. Raises the database's errors."""
    port = app.config["NODE_EXPORTER_PORT"]
    groups = []
    for node in Node.select().order_by(Node.name):
        host = LOOPBACK if node.source == "local" else (
            node.address.strip("[]") or urlsplit(node.url).hostname)
        if host:
            groups.append({"targets": [host_port(host, port)], "labels": {"node": node.name}})
    return groups


def write_config(app):
    """Write ``prometheus.yml`` (JSON, which YAML reads) and the targets; their paths."""
    path = folder(app)
    _write(path / "prometheus.yml", json.dumps(config(app), indent=2) + "\n")
    return path / "prometheus.yml", write_targets(app)


def write_targets(app):
    """Rewrite ``nodes.json`` from the node list when it changed (atomically: Prometheus
    never reads half a file); its path. When the database cannot say (not set up before the
    first `make run`, or down), the nodes it listed stay; with none yet, no node."""
    path = folder(app) / "nodes.json"
    try:
        text = json.dumps(node_targets(app), indent=2) + "\n"
    except (DatabaseError, InterfaceError) as error:
        if path.exists():
            log.warning("node targets kept as they were: the database failed (%s)", error)
            return path
        text = "[]\n"
    if not path.exists() or path.read_text() != text:
        _write(path, text)
    return path


def refresh_targets(app):
    """``write_targets``, then the connection closed, so a database that restarted or was
    down meanwhile serves the next refresh (it connects on its first query, inside
    ``write_targets``'s handling of database errors)."""
    try:
        return write_targets(app)
    finally:
        db.database.close()


def _write(path, text, mode=0o644):
    part = path.with_name(f".{path.name}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(part, path)


def prometheus_argv(config_path, storage, listen, retention):
    return ["prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={storage}",
            f"--storage.tsdb.retention.time={retention}", f"--web.listen-address={listen}"]


def node_exporter_argv(listen):
    return ["prometheus-node-exporter", f"--web.listen-address={listen}"]


def check_free(host, port):
    """RuntimeError, saying what to do, when something already listens on ``host:port``
    (Debian's own prometheus or node-exporter service, say)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RuntimeError(
                f"port {port} is in use ({host_port(host, port)}: {error.strerror}). If the "
                "system's own services hold it, stop them: systemctl disable --now prometheus "
                "prometheus-node-exporter; or choose other ports with "
                "HOURGLASS_PROMETHEUS_PORT and HOURGLASS_NODE_EXPORTER_PORT.") from None


def program_env():
    """The environment of a program of the stack: PATH, HOME and LANG, nothing else."""
    return {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}


class Child:
    """One program of the stack, its output in ``log_path``; ``options`` for Popen (the
    environment is ``program_env()`` unless they say). It ends when the thread starting it
    does: start it from the main thread."""

    def __init__(self, argv, log_path, ready_url=None, **options):
        self.argv, self.log_path, self.ready_url = argv, Path(log_path), ready_url
        self.options = {"env": program_env(), **options}
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=processes.dying_with_parent(), **self.options)
        return self

    def wait_ready(self, timeout=START_SECONDS):
        """Wait until ``ready_url`` answers 200; RuntimeError with the log's end if the
        program exits or takes longer."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(self.ready_url, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        state = "exited" if self.process.poll() is not None else "is not ready"
        raise RuntimeError(f"{self.argv[0]} {state}:\n{self.log_tail()}")

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_SECONDS; waits for the exit."""
        if self.process is not None:
            processes.stop(self.process, STOP_SECONDS)


def run(app):
    """Run node-exporter and Prometheus until one exits or this process is stopped (SIGINT
    or SIGTERM); rewrites the targets every DISCOVERY_SECONDS, ``prometheus.url`` while up."""
    path = folder(app)
    port, exporter_port = app.config["PROMETHEUS_PORT"], app.config["NODE_EXPORTER_PORT"]
    check_free(LOOPBACK, exporter_port)
    check_free(LOOPBACK, port)
    config_path, _ = write_config(app)
    url = f"http://{LOOPBACK}:{port}"
    exporter_at = host_port(LOOPBACK, exporter_port)
    children = [
        Child(node_exporter_argv(exporter_at), path / "node-exporter.log",
              f"http://{exporter_at}/metrics"),
        Child(prometheus_argv(config_path, path / "data", host_port(LOOPBACK, port),
                              app.config["PROMETHEUS_RETENTION"]),
              path / "prometheus.log", f"{url}/-/ready"),
    ]
    url_file = path / "prometheus.url"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for child in children:
            child.start().wait_ready()
        _write(url_file, f"{url}\n{os.getpid()}\n")
        click.echo(f"Prometheus on {url}/ (config {config_path}, logs in {path})")
        while all(child.process.poll() is None for child in children):
            time.sleep(app.config["DISCOVERY_SECONDS"])
            refresh_targets(app)
        ended = next(child for child in children if child.process.poll() is not None)
        raise RuntimeError(f"{ended.argv[0]} exited:\n{ended.log_tail()}")
    finally:
        url_file.unlink(missing_ok=True)
        for child in reversed(children):
            child.stop()


def start_beside(app):
    """``flask monitoring run`` for this instance as a child process (``flask serve`` with
    HOURGLASS_MONITORING on; its scheduler off); stop it with ``Child.stop``. It gets the
    portal's environment less the secrets it has no use for (HOURGLASS_METRICS_TOKEN stays:
    it writes Prometheus's token file) and the multiprocess metrics folder of the workers."""
    env = {name: value for name, value in os.environ.items() if name not in
           {"GRAFANA_TOKEN", "SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR"}}
    if "SECRET_KEY" in os.environ:  # one it never signs with, so it writes no key file
        env["SECRET_KEY"] = secrets.token_urlsafe(48)
    env.update(HOURGLASS_INSTANCE=app.instance_path, HOURGLASS_SCHEDULER="off")
    return Child([sys.executable, "-m", "flask", "--app", "app", "monitoring", "run"],
                 folder(app) / "monitoring.log", cwd=app.root_path, env=env).start()


monitoring_cli = AppGroup("monitoring", help="Prometheus and node-exporter for this instance.")


@monitoring_cli.command("config")
def config_command():
    """Write prometheus.yml and the node targets; print their paths."""
    from flask import current_app

    warn_if_refused(current_app)
    for path in write_config(current_app):
        click.echo(path)


@monitoring_cli.command("run")
def run_command():
    """Run Prometheus (127.0.0.1:HOURGLASS_PROMETHEUS_PORT) and node-exporter for this
    instance in the foreground; Ctrl-C stops both."""
    from flask import current_app

    warn_if_refused(current_app)
    try:
        run(current_app)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass


def warn_if_refused(app):
    """Say on stderr when Prometheus will get 401 from Hourglass's /metrics, and the fix."""
    reason = scrape_refused(app)
    if reason:
        click.echo(f"Warning: {reason}. Set HOURGLASS_METRICS_TOKEN (the same for Hourglass "
                   "and for this command).", err=True)


def init_app(app):
    """Add the ``monitoring`` CLI."""
    app.cli.add_command(monitoring_cli)
