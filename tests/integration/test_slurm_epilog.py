"""The Epilog Hourglass ships (scheduler/slurm_epilog.sh), run by a real cluster's slurmd: a job
that Slurm ends has its Podman containers (labelled ``hourglass.slurm-job=<id>``; a
heterogeneous job's with its leader's id) stopped before it leaves COMPLETING (kept, exited,
with their logs), and no other container stops; whatever fails, the script exits 0, since a
failing Epilog drains the node.

The cluster is this module's own (the session's runs a marker Epilog): its Epilog is a wrapper
that points the shipped script at the session's Podman service.
"""

import socket
import subprocess

import pytest

from scheduler.backend import SLURM_JOB_LABEL
from scheduler.podman import PodmanBackend
from tests.conftest import TEST_LABEL
from tests.integration.test_slurm_cluster import job_spec, jobs, running, submit
from tests.slurm_cluster import EPILOG
from tests.support import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.podman]

@pytest.fixture(scope="module")
def cluster(slurm_podman_cluster):
    return slurm_podman_cluster


@pytest.fixture
def slurm(cluster):
    """The module's cluster; every job still pending or running is cancelled at the end and
    the nodes are idle again."""
    yield cluster
    cluster.settle()


@pytest.fixture
def start_container(podman_service, test_image):
    """Start a container labelled with Slurm job ``job``; its id. What is left is removed."""
    backend = PodmanBackend(podman_service.url)
    started = []

    def start(job):
        with backend.client() as client:
            container = client.containers.create(
                test_image, ["sleep", "300"], init=True,
                labels={TEST_LABEL: "1", SLURM_JOB_LABEL: str(job)})
            container.start()
        started.append(container.id)
        return container.id

    yield start
    left = set(started) & containers(podman_service)
    for container in left:
        backend.remove(container)


def containers(podman_service, running=False):
    """The ids of the containers of the session's Podman service (``running``: only those
    that run)."""
    with PodmanBackend(podman_service.url).client() as client:
        return {container.id for container in client.containers.list(all=not running)}


def cancel(cluster, job_id):
    """Cancel the job and wait until Slurm has ended it, its Epilog run on every node."""
    status, answer = cluster.request("DELETE", f"/job/{job_id}")
    assert status == 200 and not answer["errors"], answer
    wait_for(lambda: all(c["job_state"] == "CANCELLED" for c in jobs(cluster, job_id)),
             timeout=60, what=f"job {job_id} cancelled")


def test_cancelling_a_job_stops_its_containers_and_no_other(
        slurm, podman_service, start_container):
    job_id = submit(slurm, job_spec(slurm, 1))
    wait_for(lambda: running(slurm, job_id), what=f"job {job_id} running")
    mine = {start_container(job_id), start_container(job_id)}
    other = start_container(job_id + 1000)  # a job id this cluster has not reached
    assert mine | {other} <= containers(podman_service, running=True)

    cancel(slurm, job_id)
    # Stopped by the time the job leaves COMPLETING: its chips are free only after the
    # Epilog. They stay, exited, with their logs (Hourglass removes them with their task).
    left = containers(podman_service, running=True)
    assert not mine & left
    assert other in left
    assert mine <= containers(podman_service)
    stopped = (slurm.root / "epilog.err").read_text()
    for container in mine:
        assert f"job {job_id}: stopped container {container[:12]}" in stopped


def test_each_component_of_a_heterogeneous_job_stops_the_leaders_containers(
        slurm, podman_service, start_container):
    leader = submit(slurm, job_spec(slurm, 1), job_spec(slurm, 1))
    first, second = wait_for(lambda: running(slurm, leader), what="the heterogeneous job")
    assert second["job_id"] != leader
    # Containers are labelled, as the backend labels them, with the leader's id.
    mine = {start_container(leader), start_container(leader)}
    assert mine <= containers(podman_service, running=True)

    # The second component ending alone (a node failure, scancel of its id) runs its
    # Epilog, with its own SLURM_JOB_ID and the leader's SLURM_HET_JOB_ID: it stops the
    # leader's containers of its node's Podman (both nodes share one here).
    cancel(slurm, second["job_id"])
    assert jobs(slurm, leader)[0]["job_state"] == "RUNNING"
    assert not mine & containers(podman_service, running=True)

    # The leader's cancel: the rest of the job, and its containers, stop.
    again = {start_container(leader), start_container(leader)}
    cancel(slurm, leader)
    assert not again & containers(podman_service, running=True)


def epilog(env):
    """Run the script as slurmd would, with ``env`` alone; (exit status, stderr)."""
    result = subprocess.run([str(EPILOG)], env=env, capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stderr


@pytest.mark.parametrize("job", ["", "12;true", "12 13", "-1", "１２"])
def test_a_job_id_that_is_not_digits_is_ignored(job):
    assert epilog({"SLURM_JOB_ID": job}) == (0, "hourglass epilog: no job id to clean up after\n")


def test_a_podman_that_does_not_answer_still_exits_0(tmp_path):
    closed = tmp_path / "closed.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(closed))  # never listening: every connection is refused
    status, stderr = epilog({"SLURM_JOB_ID": "42",
                             "HOURGLASS_EPILOG_PODMAN_URL": f"unix://{closed}"})
    assert status == 0
    assert stderr.endswith("hourglass epilog: job 42: could not list its containers\n")
