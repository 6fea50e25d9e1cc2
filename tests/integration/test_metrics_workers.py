"""``/metrics``'s histograms for real: under ``flask --app app serve`` with two gunicorn
workers, the scheduler's pass histogram is observed by the leader worker alone, yet every
worker's scrape counts every pass (prometheus_client's multiprocess mode), and no count
goes back when the leader worker dies and gunicorn replaces it; on real Podman, the leader's
pass times a replica's wait and a notebook's start to a JupyterLab that answers; on
PostgreSQL, the per replica and per chip gauges are the latest samples as on SQLite."""

import os
import signal
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from portal.metrics import Timings
from portal.models import (
    ChipSample,
    Node,
    NodeChip,
    Pool,
    Replica,
    ReplicaSample,
    ResourceSpec,
    Subtask,
    Task,
    User,
    utcnow,
)
from portal.notebooks import active_run, create_notebook
from scheduler.reconcile import Reconciler
from tests.conftest import JUPYTER_IMAGE
from tests.integration.test_notebook_run import drive, first_answer, jupyter
from tests.integration.test_notebook_run import lab as notebook_lab  # noqa: F401 (fixture)
from tests.support import wait_for

PASSES = "hourglass_scheduler_pass_seconds_count"


def scrape(url):
    """(the answering worker's scheduler state, the count of passes it says), both asked on
    one new kept-alive connection, so of one worker, whichever accepted it."""
    with requests.Session() as session:
        state = session.get(f"{url}/healthz", timeout=5).json()["scheduler"]["state"]
        response = session.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    (count,) = [s.value for family in text_string_to_metric_families(response.text)
                for s in family.samples if s.name == PASSES]
    return state, count


def leader_pid(server):
    """The pid of the worker that holds the scheduler's lease (its holder id says it)."""
    with closing(sqlite3.connect(Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db")) as db:
        row = db.execute("SELECT holder FROM leader_lease WHERE name = 'scheduler'").fetchone()
    return int(row[0].split(":")[1])


def scrapes_until(server, done, what):
    """Scrape ``server`` until ``done(scrapes)``; the scrapes, [(state, count)]."""
    scrapes = []

    def again():
        scrapes.append(scrape(server.url))
        return done(scrapes)
    wait_for(again, timeout=30, interval=0.05, what=what)
    return scrapes


@pytest.mark.podman
def test_every_worker_counts_every_pass_and_counts_never_go_back(live_server_factory):
    server = live_server_factory(HOURGLASS_WORKERS="2", HOURGLASS_SCHEDULER="on",
                                 HOURGLASS_LEASE_SECONDS="1.5", HOURGLASS_TICK_SECONDS="0.2")
    server.flask("db", "upgrade")
    server.start()
    folder = Path(server.env["HOURGLASS_INSTANCE"]) / "prometheus-multiproc"
    scrapes_until(server, lambda got: got[-1][1] > 0, "a first pass counted")
    scrapes = scrapes_until(server, lambda got: len(got) >= 10 and {
        state for state, _count in got} == {"leader", "follower"}, "both workers scraped")
    counts = [count for _state, count in scrapes]
    assert min(counts) > 0 and counts == sorted(counts), scrapes

    # The leader worker dies; gunicorn starts another, the follower takes the lease over.
    dead = leader_pid(server)
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: leader_pid(server) != dead, timeout=15, what="a new leader")
    later = scrapes_until(server, lambda got: len(got) >= 5 and got[-1][1] > got[0][1],
                          "passes counted by the new leader")
    counts += [count for _state, count in later]
    assert counts == sorted(counts), (scrapes, later)
    assert (folder / f"histogram_{dead}.db").exists()  # its passes still count

    server.close()  # the master stops its workers; the child_exit hook ran without fault
    assert server.process.returncode == 0, server.log()


@pytest.mark.podman
def test_the_pass_times_a_replicas_wait_and_a_notebooks_start(notebook_lab):  # noqa: F811
    app, renter, untimed, backend = notebook_lab
    registry = CollectorRegistry()
    reconciler = Reconciler(untimed.local_url, host_root=untimed.host_root, grace=2,
                            data_root=app.config["DATA_ROOT"], timings=Timings(registry))

    def value(name, **labels):
        return registry.get_sample_value(name, labels) or 0

    run = active_run(create_notebook(renter, "lab", JUPYTER_IMAGE, "lab1", "default"))
    run = drive(reconciler, run, "running")
    replica = Replica.get(Replica.task == run)
    assert value("hourglass_queue_wait_seconds_count", pool="default") == 1
    assert value("hourglass_queue_wait_seconds_sum", pool="default") > 0
    first_answer(jupyter(replica, "status"), run.secret)
    wait_for(lambda: value("hourglass_notebook_start_seconds_count") == 1, timeout=10,
             what="the notebook's start timed")
    for _ in range(3):  # later passes time nothing again
        reconciler.run()
    assert value("hourglass_queue_wait_seconds_count", pool="default") == 1
    assert value("hourglass_notebook_start_seconds_count") == 1
    assert value("hourglass_notebook_start_seconds_sum") > 0


@pytest.mark.postgres
def test_on_postgresql_the_gauges_are_the_latest_samples(instance, postgres_url):
    from app import create_app
    from portal import db

    app = create_app({"TESTING": True, "DATABASE_URL": postgres_url})
    now = utcnow()
    with app.app_context():
        db.upgrade()
        node = Node.create(name="a", url="unix:///a.sock", ready=True)
        chip = NodeChip.create(node=node, kind="nvidia.com/gpu", index=1, device="/dev/nvidia1")
        renter = User.create(name="rene", role="renter", password_hash="-")
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=512, price_per_hour=1)
        task = Task.create(user=renter, name="t", image="busybox", pool=Pool.get(Pool.is_default))
        subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
        replica = Replica.create(task=task, subtask=subtask, index=0, state="running", node=node)
        for age, cores, util in ((15, 0.5, 0.25), (0, 2.0, 0.5), (3600, 9.0, 0.9)):
            at = now - timedelta(seconds=age)
            ReplicaSample.create(replica=replica, at=at, cpu_cores=cores, memory_bytes=None)
            ChipSample.create(chip=chip, replica=replica, at=at, util_ratio=util)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    db.database.close()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples
           if s.name.startswith(("hourglass_replica_", "hourglass_chip_"))}
    holder = f"{task.id}/main/0"
    assert got == {
        ("hourglass_replica_cpu_cores", (("node", "a"), ("replica", holder),
                                         ("task", str(task.id)))): 2.0,
        ("hourglass_chip_utilization_ratio", (("chip", "1"), ("kind", "nvidia.com/gpu"),
                                              ("node", "a"), ("replica", holder))): 0.5}
