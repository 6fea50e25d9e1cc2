"""What the Slurm backend relies on, checked against the real two-node cluster (``slurm_cluster``):
slurmrestd's node list, a job's chips by index in ``gres_detail``, a heterogeneous job that
starts whole or not at all, Slurm's pending reason, and cancel running the Epilog.

The cluster is the session's: the ``slurm`` fixture cancels the jobs a test left and waits for
both nodes to be idle again before the next test starts.
"""

import re

import pytest

from tests.slurm_cluster import CHIPS, NODES, PARTITION
from tests.support import wait_for

pytestmark = pytest.mark.slurm

GRES_RE = re.compile(r"tpu:bm1684x:(\d+)\(IDX:([^)]*)\)")


def job_spec(cluster, chips, **extra):
    """The job properties of one component: one task, ``chips`` chips, in partition tpu."""
    return {"environment": {"PATH": "/usr/bin:/bin"}, "partition": PARTITION, "tasks": 1,
            "gres": f"tpu:bm1684x:{chips}", "current_working_directory": str(cluster.root),
            "standard_output": str(cluster.root / "job-%j.out"), **extra}


def indices(text):
    """``0-1,4`` -> [0, 1, 4]."""
    found = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        found += range(int(first), int(last or first) + 1)
    return found


def chips_of(job):
    """[(node, index), ...] of a running job, from ``gres_detail`` (one entry per node, in
    the order of ``nodes``; a single node here)."""
    assert job["nodes"] in NODES, job["nodes"]
    (detail,) = job["gres_detail"]
    count, idx = GRES_RE.fullmatch(detail).groups()
    held = [(job["nodes"], index) for index in indices(idx)]
    assert len(held) == int(count)
    return held


def submit(cluster, *components, script="#!/bin/sh\nsleep 300"):
    """Submit a job of ``components`` (several: a heterogeneous job) through slurmrestd; its
    id (the leader's)."""
    body = {"script": script}
    if len(components) == 1:
        body["job"] = components[0]
    else:
        body["jobs"] = list(components)
    status, answer = cluster.request("POST", "/job/submit", body)
    assert status == 200 and not answer["errors"], answer
    return answer["job_id"]


def jobs(cluster, job_id):
    """The job's components (one for a plain job), from slurmrestd."""
    status, answer = cluster.request("GET", f"/job/{job_id}")
    assert status == 200, answer
    return answer["jobs"]


@pytest.fixture
def slurm(slurm_cluster):
    """The session's cluster; every job still pending or running is cancelled at the end and
    the nodes are idle again."""
    yield slurm_cluster
    slurm_cluster.settle(timeout=30)


def running(cluster, job_id):
    """The job's components once any is RUNNING (else None)."""
    components = jobs(cluster, job_id)
    return components if any(c["job_state"] == "RUNNING" for c in components) else None


def test_both_nodes_are_idle_with_three_chips_each(slurm):
    status, answer = slurm.request("GET", "/nodes")
    assert status == 200
    nodes = {node["name"]: node for node in answer["nodes"]}
    assert sorted(nodes) == list(NODES)
    for node in nodes.values():
        assert (node["state"], node["state_flags"]) == ("idle", [])
        assert node["gres"] == f"tpu:bm1684x:{CHIPS}"
        assert node["gres_used"] == "tpu:bm1684x:0(IDX:N/A)"
        assert node["partitions"] == [PARTITION]
        assert (node["cpus"], node["real_memory"]) == (2, 1024)


def test_a_job_runs_with_its_chips_by_index(slurm):
    job_id = submit(slurm, job_spec(slurm, 2, name="two-chips"))
    (job,) = wait_for(lambda: running(slurm, job_id), what=f"job {job_id} running")
    assert job["gres_detail"] == ["tpu:bm1684x:2(IDX:0-1)"]  # the first two files of the node
    assert job["tres_per_node"] == "gres:tpu:bm1684x:2"
    assert job["het_job_id"] == 0
    # scontrol says the same per node.
    shown = slurm.run("scontrol", "show", "job", "-d", str(job_id)).stdout
    assert f"Nodes={job['nodes']} " in shown and "GRES=tpu:bm1684x:2(IDX:0-1)" in shown
    # A second job never gets a chip the first one holds.
    other_id = submit(slurm, job_spec(slurm, 2))
    (other,) = wait_for(lambda: running(slurm, other_id), what=f"job {other_id} running")
    assert not set(chips_of(job)) & set(chips_of(other))


def test_a_heterogeneous_job_starts_whole_or_not_at_all(slurm):
    # Two 2-chip jobs leave one chip on each node: room for neither component.
    blockers = [submit(slurm, job_spec(slurm, 2)) for _ in NODES]
    for blocker in blockers:
        wait_for(lambda b=blocker: running(slurm, b), what=f"job {blocker} running")
    leader = submit(slurm, job_spec(slurm, 2, name="het"), job_spec(slurm, 2))
    components = wait_for(
        lambda: [c for c in jobs(slurm, leader) if c["state_reason"] != "None"] or None,
        what="backfill to look at the heterogeneous job")
    assert [c["job_state"] for c in jobs(slurm, leader)] == ["PENDING", "PENDING"]
    assert {c["state_reason"] for c in components} == {"Resources"}

    # One blocker gone frees two chips on one node: room for one component only, and after
    # backfill looked again, neither runs.
    slurm.request("DELETE", f"/job/{blockers[0]}")
    wait_for(lambda: jobs(slurm, blockers[0])[0]["job_state"] == "CANCELLED",
             what=f"job {blockers[0]} cancelled")
    looked = jobs(slurm, leader)[0]["last_sched_evaluation"]
    wait_for(lambda: jobs(slurm, leader)[0]["last_sched_evaluation"] > looked,
             what="backfill to look at the heterogeneous job again")
    assert [c["job_state"] for c in jobs(slurm, leader)] == ["PENDING", "PENDING"]

    slurm.request("DELETE", f"/job/{blockers[1]}")
    components = wait_for(lambda: running(slurm, leader), what="the heterogeneous job running")
    # The first time either runs, both do, one job per component, none sharing a chip.
    assert [c["job_state"] for c in components] == ["RUNNING", "RUNNING"]
    assert [c["het_job_id"] for c in components] == [leader, leader]
    assert [c["het_job_offset"] for c in components] == [0, 1]
    assert components[0]["job_id"] == leader and components[1]["job_id"] != leader
    assert components[0]["het_job_id_set"] == f"{leader}-{components[1]['job_id']}"
    held = chips_of(components[0]) + chips_of(components[1])
    assert len(set(held)) == 4
    # A component is a job of its own to GET too.
    (second,) = jobs(slurm, components[1]["job_id"])
    assert (second["het_job_id"], second["het_job_offset"]) == (leader, 1)


def test_more_chips_than_free_waits_for_resources(slurm):
    blockers = [submit(slurm, job_spec(slurm, 2)) for _ in NODES]
    for blocker in blockers:
        wait_for(lambda b=blocker: running(slurm, b), what=f"job {blocker} running")
    waiting = submit(slurm, job_spec(slurm, 2))
    (job,) = wait_for(lambda: [j for j in jobs(slurm, waiting) if j["state_reason"] != "None"],
                      what="the scheduler to give a reason")
    assert (job["job_state"], job["state_reason"]) == ("PENDING", "Resources")
    assert job["gres_detail"] == [] and job["nodes"] == ""

    slurm.request("DELETE", f"/job/{blockers[0]}")
    (job,) = wait_for(lambda: running(slurm, waiting), what=f"job {waiting} running")
    assert len(chips_of(job)) == 2


def test_more_chips_than_a_node_has_is_refused(slurm):
    status, answer = slurm.request("POST", "/job/submit", {
        "script": "#!/bin/sh\nsleep 300", "job": job_spec(slurm, CHIPS + 1)})
    assert status == 500
    assert answer["errors"] == [{"error_code": 2014,
                                 "error": "Requested node configuration is not available"}]
    assert "job_id" not in answer


def epilogs(cluster):
    """What the fixture's Epilog wrote: [{"job": id, "het": leader id or "", "node": name}]."""
    path = cluster.root / "epilog.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [dict(field.split("=", 1) for field in line.split()) for line in lines]


def test_cancel_ends_the_job_and_runs_the_epilog(slurm):
    job_id = submit(slurm, job_spec(slurm, 1))
    (job,) = wait_for(lambda: running(slurm, job_id), what=f"job {job_id} running")

    status, answer = slurm.request("DELETE", f"/job/{job_id}")
    assert status == 200 and not answer["errors"], answer
    # COMPLETING until the Epilog has run; CANCELLED after.
    wait_for(lambda: jobs(slurm, job_id)[0]["job_state"] == "CANCELLED",
             what=f"job {job_id} cancelled")
    assert {"job": str(job_id), "het": "", "node": job["nodes"]} in epilogs(slurm)
    # Cancelling again is no error.
    assert slurm.request("DELETE", f"/job/{job_id}")[0] == 200


def test_cancel_a_heterogeneous_job_by_its_leader(slurm):
    leader = submit(slurm, job_spec(slurm, 2), job_spec(slurm, 2))
    first, second = wait_for(lambda: running(slurm, leader), what="the heterogeneous job")

    # A component's own id cancels that component alone.
    assert slurm.request("DELETE", f"/job/{second['job_id']}")[0] == 200
    wait_for(lambda: jobs(slurm, leader)[1]["job_state"] == "CANCELLED",
             what="the second component cancelled")
    assert jobs(slurm, leader)[0]["job_state"] == "RUNNING"

    # The leader's id cancels the job. Each component's Epilog runs on its node with the
    # component's own SLURM_JOB_ID and the leader's SLURM_HET_JOB_ID.
    assert slurm.request("DELETE", f"/job/{leader}")[0] == 200
    wait_for(lambda: jobs(slurm, leader)[0]["job_state"] == "CANCELLED",
             what="the heterogeneous job cancelled")
    ran = epilogs(slurm)
    for component in (first, second):
        assert {"job": str(component["job_id"]), "het": str(leader),
                "node": component["nodes"]} in ran
