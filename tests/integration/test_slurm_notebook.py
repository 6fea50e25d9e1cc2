"""A notebook on a Slurm pool (docs/slurm.md, Notebooks): its run is one Slurm job, JupyterLab
runs in the allocation with the chip Slurm gave it, and the renter reaches it through the
notebook proxy, with the notebook origin's grant and access rules; stopping it stops the
container and ends the job.

The cluster is this module's own (tests/slurm_cluster.py) on the session's Podman service,
which both compute nodes share, as a cluster on one host does. Hourglass runs either on that
host (its local Podman is the nodes': JupyterLab is reached on its task's network) or on
another (a head node: JupyterLab's port is published on the compute node's address, as on a
real cluster). The test drives the leader's pass (``Reconciler.run``) itself.
"""

import os
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from portal import ledger
from portal.metrics import Timings
from portal.models import (
    Node,
    Notebook,
    Pool,
    Replica,
    Task,
)
from portal.notebooks import active_run, create_notebook, delete_notebook, stop_notebook
from portal.pools import set_pool_limits
from portal.reasons import CULLED
from scheduler.backend import INSTANCE_LABEL, SLURM_JOB_LABEL
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from scheduler.slurm_requests import job_name
from tests.conftest import PASSWORD
from tests.integration.test_slurm_pool import drive, job_of
from tests.slurm_cluster import hourglass_lab
from tests.support import login, wait_for
from tests.unit.test_proxy_access import GRANT_RE, enter, open_page

pytestmark = [pytest.mark.slurm, pytest.mark.podman]

# Where Hourglass runs when it is not the cluster's host: a URL of no node.
HEAD_URL = "ssh://root@head/run/podman/podman.sock"
PEER_PORTS = range(32600, 32640)


def containers_of(podman_service, reconciler, run):
    """The containers (running or not) labelled with ``run``'s Slurm job, of
    ``reconciler``'s instance: other test sessions' clusters may number a job alike,
    on the same Podman storage."""
    with PodmanBackend(podman_service.url).client() as client:
        return client.containers.list(all=True, filters=[
            f"label={INSTANCE_LABEL}={reconciler.instance}",
            f"label={SLURM_JOB_LABEL}={run.slurm_job}"])


@pytest.fixture(scope="module")
def cluster(slurm_podman_cluster):
    return slurm_podman_cluster


@pytest.fixture(params=["this-host", "head-node"])
def lab(request, instance, cluster, podman_service, jupyter_image, monkeypatch):
    """An app with the local node and pool "tpu" mapped to the cluster's partition (both nodes
    found by discovery, 3 chips each), spec "lab1" (1 CPU, 512 MiB, 1 chip), a funded renter
    of the pool's group, and a reconciler that knows the data folder and times notebook
    starts (on its own registry); it runs on the cluster's host, or on a head node whose
    Podman is none of the nodes'."""
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(podman_service.url).run()
    _slurm, renter = hourglass_lab(cluster, podman_service.url, "lab1", "1", "0.5", chips=1)
    registry = CollectorRegistry()
    local = podman_service.url if request.param == "this-host" else HEAD_URL
    reconciler = Reconciler(local, grace=2, data_root=app.config["DATA_ROOT"],
                            peer_ports=PEER_PORTS, timings=Timings(registry))
    yield app, renter, reconciler, registry
    reconciler.notebook_starts.stop()
    backend = PodmanBackend(podman_service.url)
    for replica in Replica.select().where(Replica.container != ""):
        backend.remove(replica.container)
    ctx.pop()
    cluster.settle()


def test_a_notebook_on_slurm_runs_as_a_job_and_opens_through_the_proxy(
        lab, cluster, podman_service, jupyter_image):
    app, renter, reconciler, registry = lab
    notebook = create_notebook(renter, "slurm lab", jupyter_image, "lab1", "tpu")
    run = drive(reconciler, active_run(notebook), lambda t: t.state == "running",
                "the notebook running")

    # One Slurm job, running, named after the run; its container carries the job's id.
    assert run.slurm_job and not run.slurm_job_done
    components = job_of(cluster, run)
    assert [c["job_state"] for c in components] == ["RUNNING"]
    assert components[0]["name"] == job_name(reconciler.instance, run.id)
    replica = Replica.select(Replica, Node).join(Node).where(Replica.task == run).get()
    slurm_node = components[0]["nodes"]
    assert replica.node.name == f"lab-{slurm_node}"
    if reconciler.local_url == replica.node.url:  # on its task's network, from this host
        assert replica.peer_port is None and replica.address.endswith(":8888")
    else:  # published on the compute node's address
        assert replica.peer_port in PEER_PORTS
        assert replica.address == f"{replica.node.address}:{replica.peer_port}"
    labelled = containers_of(podman_service, reconciler, run)
    assert [(c.name, c.labels[SLURM_JOB_LABEL]) for c in labelled] == [
        (replica.container, str(run.slurm_job))]

    # JupyterLab sees as /dev/bm-sophon0 the very chip Slurm gave the job.
    (detail,) = components[0]["gres_detail"]
    index = int(detail.rsplit("IDX:", 1)[1].rstrip(")"))
    given = cluster.devices[slurm_node][index].stat().st_rdev
    backend = PodmanBackend(podman_service.url)
    seen = backend.exec(replica.container, ["stat", "-c", "%t:%T", "/dev/bm-sophon0"])
    assert seen.exit_code == 0, seen.stderr
    assert seen.stdout.strip() == f"{os.major(given):x}:{os.minor(given):x}"
    assert "bm-sophon1" not in backend.exec(replica.container, ["ls", "/dev"]).stdout.split()

    # The renter's own progress view says ready once JupyterLab answers...
    portal = app.test_client()
    assert login(portal, "renter", "rene", PASSWORD).status_code == 302
    ready = f"/api/v1/notebooks/{notebook.id}/ready"
    wait_for(lambda: portal.get(f"{ready}?wait=10").json["ready"], timeout=60, interval=0,
             what="the notebook ready")
    answer = portal.get(ready)
    assert answer.json["step"] == 4 and answer.json["replicas"][0]["ready"] is True
    # ...and the leader's notebook start waiter timed its start.
    wait_for(lambda: registry.get_sample_value("hourglass_notebook_start_seconds_count") == 1,
             timeout=10, what="the notebook's start timed")

    # Through the proxy: Open's one-time grant, the notebook origin's access cookie, then
    # JupyterLab at the replica's stored address with the run's token added by the proxy.
    nb = f"http://localhost:{app.config['NOTEBOOK_PORT']}"
    page = open_page(portal, notebook.id)
    assert page.status_code == 200, page.get_data(as_text=True)
    entered = enter(portal, nb, GRANT_RE.search(page.get_data(as_text=True)).group(1))
    assert entered.status_code == 303
    assert entered.headers["Location"] == f"/nb/{replica.id}/lab"
    status = portal.get(f"/nb/{replica.id}/api/status", base_url=nb)
    assert status.status_code == 200, status.get_data(as_text=True)
    assert "started" in status.json
    lab_page = portal.get(f"/nb/{replica.id}/lab", base_url=nb)
    assert lab_page.status_code == 200 and run.secret not in lab_page.get_data(as_text=True)
    stranger = app.test_client().get(f"/nb/{replica.id}/api/status", base_url=nb,
                                     headers={"Sec-Fetch-Mode": "cors"})
    assert stranger.status_code == 401  # no access session: the proxy adds no token

    # The renter stops it: the container stops, then the job is cancelled and done.
    stop_notebook(notebook)
    run = drive(reconciler, run, lambda t: t.state == "stopped" and t.slurm_job_done,
                "the stop and the job's end")
    wait_for(lambda: all(c["job_state"] != "RUNNING" for c in job_of(cluster, run)),
             what="the job cancelled")
    cluster.settle()
    assert [c.attrs["State"] for c in containers_of(podman_service, reconciler, run)] == ["exited"]
    assert portal.get(f"/nb/{replica.id}/api/status", base_url=nb).status_code == 503
    ended = Replica.get_by_id(replica.id)
    assert ended.state == "stopped" and ended.finished_ns and not list(ended.chips)
    assert ended.settled and ended.charged > 0
    assert active_run(notebook) is None and Task.get_by_id(run.id).state == "stopped"
    assert ledger.verify() == []
    # Deleted, the notebook leaves no container behind (its stopped one kept its logs).
    delete_notebook(Notebook.get_by_id(notebook.id))
    reconciler.run()
    wait_for(lambda: containers_of(podman_service, reconciler, run) == [],
             what="the run's container removed")


@pytest.mark.parametrize("lab", ["head-node"], indirect=True)
def test_an_idle_notebook_on_slurm_is_culled_and_its_job_ends(lab, cluster, podman_service,
                                                             jupyter_image):
    app, renter, reconciler, _registry = lab
    reconciler.culling_minute = timedelta(seconds=2)
    set_pool_limits(Pool.get(Pool.name == "tpu"), cull_idle_minutes=1)
    notebook = create_notebook(renter, "idle lab", jupyter_image, "lab1", "tpu")
    run = drive(reconciler, active_run(notebook), lambda t: t.state == "running",
                "the notebook running")
    assert [c["job_state"] for c in job_of(cluster, run)] == ["RUNNING"]
    run = drive(reconciler, run, lambda t: t.state == "stopped" and t.slurm_job_done,
                "the idle notebook culled and its job done")
    assert run.stop_reason == CULLED
    assert Replica.get(Replica.task == run).last_activity_at is not None  # JupyterLab answered
    wait_for(lambda: all(c["job_state"] != "RUNNING" for c in job_of(cluster, run)),
             what="the job cancelled")
    assert [c.attrs["State"] for c in containers_of(podman_service, reconciler, run)] == ["exited"]
    assert ledger.verify() == []
