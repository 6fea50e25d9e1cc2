"""A real Prometheus and node-exporter for tests (Debian's packages, run as Hourglass runs
them): each on a free loopback port with a folder of its own, started ready and stopped
(SIGTERM, then SIGKILL). ``monitoring_stack`` is what the ``prometheus`` fixture yields."""

import json
import socket
from contextlib import contextmanager

import requests

from portal.prometheus_stack import Child, host_port, node_exporter_argv, prometheus_argv
from tests.support import wait_for

INTERVAL = "1s"  # scrape and rule evaluation, so a test waits seconds for a sample


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_prometheus(folder, config_path):
    """Prometheus with ``config_path`` and its storage under ``folder``, ready; a Child
    whose ``url`` is its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    listen = host_port("127.0.0.1", free_port())
    child = Child(prometheus_argv(config_path, folder / "data", listen, "1d"),
                  folder / "prometheus.log", f"http://{listen}/-/ready")
    child.url = f"http://{listen}"
    return child.start().wait_ready()


def start_node_exporter(folder, host="127.0.0.1", port=None):
    """node-exporter on ``port`` (else a free one) of ``host`` (any 127.x address), ready; a
    Child whose ``port`` and ``target`` (host:port) say where."""
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    target = host_port(host, port)
    child = Child(node_exporter_argv(target), folder / f"node-exporter-{host}-{port}.log",
                  f"http://{target}/metrics")
    child.port, child.target = port, target
    return child.start().wait_ready()


def scrape_config(targets, interval=INTERVAL):
    """Settings scraping ``targets`` ({job name: ["host:port", ...]}) at /metrics."""
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                               for job, hosts in targets.items()]}


def query(url, promql):
    """The instant vector ``promql`` gives now: a list of {"metric": labels, "value": ...}."""
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def wait_for_series(url, promql, timeout=30):
    """The series of ``promql`` once it has any (Prometheus scraped them)."""
    return wait_for(lambda: query(url, promql), timeout=timeout, interval=0.2,
                    what=f"Prometheus at {url} to have {promql}")


@contextmanager
def monitoring_stack(folder):
    """``start``, for the ``with`` block: ``start(hourglass=["host:port"], ...)`` runs a
    Prometheus scraping those jobs every second, ``start(config=path)`` one with that config
    (e.g. what ``flask monitoring config`` wrote); ``start.node_exporter(host, port)`` a
    node-exporter. They return ready Children (``.url``, ``.target``); all stopped at the
    end."""
    children = []

    def start(config=None, **targets):
        if config is None:
            config = folder / f"prometheus-{len(children)}.yml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(json.dumps(scrape_config(targets)))
        child = start_prometheus(folder / f"prometheus-{len(children)}", config)
        children.append(child)
        return child

    def node_exporter(host="127.0.0.1", port=None):
        child = start_node_exporter(folder, host, port)
        children.append(child)
        return child

    start.node_exporter = node_exporter
    try:
        yield start
    finally:
        for child in reversed(children):
            child.stop()
