"""Which Prometheus the charts read: ``PROMETHEUS_URL``, else the one ``flask monitoring run``
keeps for this instance, only while the process that wrote it lives."""

import os
import subprocess
from pathlib import Path

from portal.prometheus_stack import prometheus_url


def url_file(app, text):
    path = Path(app.instance_path) / "monitoring" / "prometheus.url"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_stacks_url_only_while_its_process_lives(app):
    assert prometheus_url(app) == ""
    url_file(app, f"http://127.0.0.1:9090\n{os.getpid()}\n")
    assert prometheus_url(app) == "http://127.0.0.1:9090"
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now (a stack killed with SIGKILL)
    url_file(app, f"http://127.0.0.1:9090\n{gone.pid}\n")
    assert prometheus_url(app) == ""
    url_file(app, "http://127.0.0.1:9090\n")  # not what monitoring run writes
    assert prometheus_url(app) == ""


def test_prometheus_url_wins(app):
    app.config["PROMETHEUS_URL"] = "http://prometheus.lab.example:9090"
    url_file(app, f"http://127.0.0.1:9090\n{os.getpid()}\n")
    assert prometheus_url(app) == "http://prometheus.lab.example:9090"
