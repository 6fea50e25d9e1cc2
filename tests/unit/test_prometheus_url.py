"""Which Prometheus the charts read: ``PROMETHEUS_URL``, else the one ``flask monitoring run``
keeps for this instance, only while the process that wrote it lives and is a ``monitoring
run`` (a pid given to another process later, after a reboot say, is not the stack)."""

import subprocess
import sys
from pathlib import Path

import pytest

from portal.prometheus_stack import prometheus_url

URL = "http://127.0.0.1:9090"
SLEEP = "import time; print('ready', flush=True); time.sleep(60)"


def url_file(app, text):
    path = Path(app.instance_path) / "monitoring" / "prometheus.url"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def sleeper(*argv):
    """A process with ``argv`` after python's own, running (its argv readable) once this
    returns."""
    process = subprocess.Popen([sys.executable, "-c", SLEEP, *argv], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"ready\n"
    return process


def end(process):
    process.kill()
    process.wait()
    process.stdout.close()


@pytest.fixture
def monitoring_process():
    """A live process whose argv ends ``monitoring run``, as ``flask monitoring run``'s."""
    process = sleeper("monitoring", "run")
    yield process
    end(process)


def test_the_stacks_url_only_while_its_process_lives(app, monitoring_process):
    assert prometheus_url(app) == ""
    url_file(app, f"{URL}\n{monitoring_process.pid}\n")
    assert prometheus_url(app) == URL
    monitoring_process.kill()
    monitoring_process.wait()  # reaped: its pid names no process now (killed with SIGKILL)
    assert prometheus_url(app) == ""
    url_file(app, f"{URL}\n")  # not what monitoring run writes
    assert prometheus_url(app) == ""


@pytest.mark.parametrize("argv", [(), ("monitoring",), ("run", "monitoring")])
def test_a_live_process_that_is_not_the_stack_has_no_url(app, argv):
    other = sleeper(*argv)  # as a process that got the stack's pid after a reboot
    try:
        url_file(app, f"{URL}\n{other.pid}\n")
        assert prometheus_url(app) == ""
    finally:
        end(other)


def test_prometheus_url_wins(app, monitoring_process):
    app.config["PROMETHEUS_URL"] = "http://prometheus.lab.example:9090"
    url_file(app, f"{URL}\n{monitoring_process.pid}\n")
    assert prometheus_url(app) == "http://prometheus.lab.example:9090"
