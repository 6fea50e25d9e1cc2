"""The Prometheus Hourglass reads: ``PROMETHEUS_URL``, else the one ``flask monitoring run``
(``make monitoring``) runs for this instance beside node-exporter, from a generated config.

The instance's ``monitoring`` folder holds ``prometheus.yml``, ``nodes.json`` (node-exporter
of every node, which Prometheus rereads by itself as it changes), ``data/`` (the storage),
the logs and, while the stack runs, ``prometheus.url``. Child processes get argv lists only.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests
from peewee import DatabaseError

from portal.models import Node

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
    file names that process, so one killed with SIGKILL leaves no URL behind)."""
    if app.config["PROMETHEUS_URL"]:
        return app.config["PROMETHEUS_URL"]
    try:
        url, pid = (Path(app.instance_path) / "monitoring" / "prometheus.url").read_text().split()
        os.kill(int(pid), 0)
    except PermissionError:  # alive, under another user
        return url
    except (OSError, ValueError):  # no file, a file of another form, or its process is gone
        return ""
    return url


def host_port(host, port):
    """``host:port`` for a scrape target, brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hourglass_target(app):
    """Where this instance's /metrics answers: HOST:PORT, on loopback when HOST is a
    wildcard (Hourglass admits loopback scrapers by default)."""
    host = os.environ.get("HOST", LOOPBACK).strip("[]")
    host = {"": LOOPBACK, "0.0.0.0": LOOPBACK, "::": "::1"}.get(host, host)
    return host_port(host, app.config["PORT"])


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
    name>; none while the database is not set up."""
    port = app.config["NODE_EXPORTER_PORT"]
    groups = []
    try:
        nodes = list(Node.select().order_by(Node.name))
    except DatabaseError:  # `make monitoring` before the first `make run`
        return []
    for node in nodes:
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
    never reads half a file); its path."""
    path = folder(app) / "nodes.json"
    text = json.dumps(node_targets(app), indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        _write(path, text)
    return path


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


class Child:
    """One program of the stack, its output in ``log_path``; ``options`` for Popen."""

    def __init__(self, argv, log_path, ready_url=None, **options):
        self.argv, self.log_path, self.ready_url = argv, Path(log_path), ready_url
        self.options = options
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, **self.options)
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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(app):
    """Run node-exporter and Prometheus until one exits or this process is stopped (SIGINT
    or SIGTERM); rewrites the targets every DISCOVERY_SECONDS, ``prometheus.url`` while up."""
    path = folder(app)
    config_path, _ = write_config(app)
    port = app.config["PROMETHEUS_PORT"]
    url = f"http://{LOOPBACK}:{port}"
    exporter_at = host_port(LOOPBACK, app.config["NODE_EXPORTER_PORT"])
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
            write_targets(app)
        ended = next(child for child in children if child.process.poll() is not None)
        raise RuntimeError(f"{ended.argv[0]} exited:\n{ended.log_tail()}")
    finally:
        url_file.unlink(missing_ok=True)
        for child in reversed(children):
            child.stop()


def start_beside(app):
    """``flask monitoring run`` for this instance as a child process (``flask serve`` with
    HOURGLASS_MONITORING on; its scheduler off); stop it with ``Child.stop``."""
    env = {**os.environ, "HOURGLASS_INSTANCE": app.instance_path, "HOURGLASS_SCHEDULER": "off"}
    return Child([sys.executable, "-m", "flask", "--app", "app", "monitoring", "run"],
                 folder(app) / "monitoring.log", cwd=app.root_path, env=env).start()


@click.group("monitoring", help="Prometheus and node-exporter for this instance.")
def monitoring_cli():
    pass


@monitoring_cli.command("config")
def config_command():
    """Write prometheus.yml and the node targets; print their paths."""
    from flask import current_app

    for path in write_config(current_app):
        click.echo(path)


@monitoring_cli.command("run")
def run_command():
    """Run Prometheus (127.0.0.1:HOURGLASS_PROMETHEUS_PORT) and node-exporter for this
    instance in the foreground; Ctrl-C stops both."""
    from flask import current_app

    try:
        run(current_app)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass


def init_app(app):
    """Add the ``monitoring`` CLI."""
    app.cli.add_command(monitoring_cli)
