"""A Slurm pool on a real two-node Slurm cluster and real Podman (docs/slurm.md): a task is a
heterogeneous job, Slurm places it, Hourglass starts each replica's container in the
allocation with the chips Slurm gave it, and nothing outlives the job.

The cluster is this module's own, with Hourglass's Epilog on the session's Podman service;
both compute nodes share that service, as a cluster on one host does.
"""

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from portal import ledger
from portal.models import Node, Pool, Replica, ResourceSpec, SlurmCluster, Task, User
from portal.pools import set_pool_limits
from portal.reasons import english
from portal.specs import parse_spec, save_spec
from portal.task_views import reason_text
from portal.tasks import create_task, request_stop
from scheduler import inventory
from scheduler.backend import SLURM_JOB_LABEL
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.reconcile import Reconciler
from scheduler.slurm_jobs import SCRIPT
from scheduler.slurm_requests import components, job_name
from tests.conftest import PASSWORD
from tests.integration.test_scheduler_restart import Api, instance_of
from tests.slurm_cluster import PARTITION, hourglass_lab
from tests.support import fund, fund_on, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.podman]

# Each replica lists its chips and says which host devices they are (by major:minor).
SHOW_CHIPS = ('echo "CHIPS=$HOURGLASS_CHIPS PEERS=$HOURGLASS_PEERS"; '
              'for d in /dev/bm-sophon*; do echo "DEV $d $(stat -c %t:%T $d)"; done; '
              'exec sleep 600')


@pytest.fixture(scope="module")
def cluster(slurm_podman_cluster):
    return slurm_podman_cluster


@pytest.fixture
def lab(instance, cluster, podman_service, test_image, monkeypatch):
    """An app with the local node and pool "tpu" mapped to the cluster's partition (both nodes
    found by discovery, 3 chips each), spec "two" (1 CPU, 256 MiB, 2 chips), a funded renter
    of the pool's group, and a reconciler."""
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    Discovery(podman_service.url, probe_image=test_image).run()
    slurm, renter = hourglass_lab(cluster, podman_service.url, "two", "1", "0.25", chips=2)
    reconciler = Reconciler(podman_service.url, grace=1)
    yield renter, reconciler, slurm
    backend = PodmanBackend(podman_service.url)
    for replica in Replica.select().where(Replica.container != ""):
        backend.remove(replica.container)
    ctx.pop()
    cluster.settle()


def drive(reconciler, task, check, what, timeout=60):
    """Run the leader's pass until ``check(task read again)``; the task, read again."""
    def there():
        reconciler.run()
        return check(Task.get_by_id(task.id))
    try:
        wait_for(there, timeout=timeout, interval=0.2, what=what)
    except AssertionError as timed_out:
        now = Task.get_by_id(task.id)
        found = [(r.state, r.reason) for r in Replica.select().where(Replica.task == task)]
        raise AssertionError(f"{timed_out}: {now.state} {now.reason!r} {found}") from None
    return Task.get_by_id(task.id)


def job_of(cluster, task):
    """The components of the task's job as slurmrestd shows them ([] once forgotten)."""
    status, answer = cluster.request("GET", f"/job/{task.slurm_job}")
    return answer.get("jobs") or [] if status == 200 else []


def running_containers_of(podman_service, job):
    """The running containers labelled with Slurm job ``job`` (ended ones stay, exited, with
    their logs, until their task is deleted)."""
    with PodmanBackend(podman_service.url).client() as client:
        return client.containers.list(filters={"label": f"{SLURM_JOB_LABEL}={job}"})


def submit(renter, test_image, replicas=2, argv=("sh", "-c", SHOW_CHIPS), **more):
    return create_task(renter, "train", test_image, list(argv), {}, "tpu",
                       [("worker", "two", replicas)], **more)


def test_a_two_replica_task_runs_in_one_job_with_its_chips(lab, cluster, podman_service,
                                                          test_image):
    renter, reconciler, slurm = lab
    task = submit(renter, test_image)
    task = drive(reconciler, task, lambda t: t.state == "running", "the task running")
    components = job_of(cluster, task)
    assert [c["job_state"] for c in components] == ["RUNNING", "RUNNING"]
    assert {c["name"] for c in components} == {job_name(reconciler.instance, task.id)}
    # Slurm placed one replica per node (two chips each, three per node); each replica runs
    # there with the very chips Slurm gave its component, renumbered from 0.
    replicas = list(Replica.select(Replica, Node).join(Node).where(Replica.task == task)
                    .order_by(Replica.index))
    backend = PodmanBackend(podman_service.url)
    for replica, component in zip(replicas, components, strict=True):
        slurm_node = component["nodes"]
        assert replica.node.name == f"lab-{slurm_node}"
        assert component["gres_detail"] == ["tpu:bm1684x:2(IDX:0-1)"]
        want = {f"/dev/bm-sophon{n}": cluster.devices[slurm_node][n] for n in range(2)}
        out = wait_for(lambda r=replica: "DEV" in (text := "".join(backend.logs(r.container)))
                       and text, what="the replica's device list")
        assert "CHIPS=0,1 " in out
        seen = dict(line.split()[1:] for line in out.splitlines() if line.startswith("DEV"))
        assert seen == {path: f"{os.major(dev.stat().st_rdev):x}:{os.minor(dev.stat().st_rdev):x}"
                        for path, dev in want.items()}
        assert replica.peer_port  # the task spans nodes: peers by address and port
    assert {r.node.name for r in replicas} == {"lab-node1", "lab-node2"}
    labelled = running_containers_of(podman_service, task.slurm_job)
    assert sorted(c.name for c in labelled) == sorted(r.container for r in replicas)

    # The renter stops it: the containers stop, then the job is cancelled and done.
    request_stop(task)
    task = drive(reconciler, task, lambda t: t.state == "stopped" and t.slurm_job_done,
                 "the stop and the job's end")
    wait_for(lambda: all(c["job_state"] != "RUNNING" for c in job_of(cluster, task)),
             what="the job cancelled")
    cluster.settle()
    assert running_containers_of(podman_service, task.slurm_job) == []
    ended = list(Replica.select().where(Replica.task == task))
    assert all(r.finished_ns and not list(r.chips) for r in ended)
    assert ledger.verify() == []
    assert all(r.charged == ledger.cost(ledger.billed_seconds(r.started_ns, r.finished_ns),
                                        r.price_per_hour) and r.settled for r in ended)


def waiting_behind_a_running_task(renter, reconciler, test_image):
    """(first, second): a 2-replica task running, two chips held on each node, and a task
    of one replica of two chips, which fits on neither, waiting in Slurm (read again)."""
    first = submit(renter, test_image, argv=("sleep", "600"))
    drive(reconciler, first, lambda t: t.state == "running", "the first task running")
    second = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    second = drive(reconciler, second, lambda t: "resources" in english(t.reason),
                   "the second waiting in Slurm")
    return first, second


def test_a_task_larger_than_what_is_free_waits_with_slurms_reason(lab, cluster, test_image):
    renter, reconciler, _slurm = lab
    first, second = waiting_behind_a_running_task(renter, reconciler, test_image)
    assert reason_text(second.reason) == f"waiting for resources in partition {PARTITION}"
    assert second.state == "pending" and second.slurm_job
    # The first ends: the second's job gets the chips and runs.
    request_stop(first)
    drive(reconciler, second, lambda t: t.state == "running", "the second task running",
          timeout=90)
    request_stop(Task.get_by_id(second.id))
    drive(reconciler, second, lambda t: t.slurm_job_done, "the second job done")
    assert ledger.verify() == []


def test_scancel_ends_the_task_and_leaves_no_container(lab, cluster, podman_service,
                                                       test_image):
    renter, reconciler, _slurm = lab
    task = submit(renter, test_image, argv=("sleep", "600"))
    task = drive(reconciler, task, lambda t: t.state == "running", "the task running")
    cluster.run("scancel", str(task.slurm_job))
    # The Epilog stops the containers before the nodes leave COMPLETING; the pass sees
    # the job ended and the task ends with it.
    task = drive(reconciler, task, lambda t: t.state not in ("pending", "running"),
                 "the task ended")
    wait_for(lambda: running_containers_of(podman_service, task.slurm_job) == [],
             what="the job's containers stopped")
    drive(reconciler, task, lambda t: t.slurm_job_done, "the job done")
    assert all(not list(r.chips) for r in Replica.select().where(Replica.task == task))
    assert english(Task.get_by_id(task.id).stop_reason).startswith(
        f"its Slurm job {task.slurm_job} ")
    assert ledger.verify() == []


def test_a_new_leader_carries_on_from_the_stored_job(lab, cluster, podman_service,
                                                     test_image):
    renter, reconciler, _slurm = lab
    task = submit(renter, test_image, argv=("sleep", "600"))
    task = drive(reconciler, task, lambda t: t.slurm_job is not None, "the job submitted")
    job = task.slurm_job
    # Another leader (a restart): nothing but the database and Slurm to go on.
    after = Reconciler(podman_service.url, grace=1)
    task = drive(after, task, lambda t: t.state == "running", "the task running")
    assert task.slurm_job == job and len(job_of(cluster, task)) == 2  # no second job
    request_stop(task)
    drive(after, task, lambda t: t.slurm_job_done, "the job done")
    wait_for(lambda: not running_containers_of(podman_service, job), what="no container left")


def test_the_sweep_cancels_a_job_no_task_claims_and_spares_the_others(lab, cluster,
                                                                      test_image):
    renter, reconciler, _slurm = lab
    claimed = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    claimed = drive(reconciler, claimed, lambda t: t.state == "running", "a task running")

    def job_named(name):
        status, answer = cluster.request("POST", "/job/submit", {
            "script": "#!/bin/sh\nexec sleep 600\n",
            "job": {"name": name, "partition": PARTITION, "tasks": 1,
                    "environment": {"PATH": "/bin"}, "current_working_directory": "/tmp",
                    "standard_output": "/dev/null"}})
        assert status == 200, answer
        return answer["job_id"]

    def state(job):
        return cluster.request("GET", f"/job/{job}")[1]["jobs"][0]["job_state"]

    # Another instance's job (another Hourglass on the same cluster) and a lab's own job.
    unclaimed, theirs, own = (job_named(job_name(reconciler.instance, 999999)),
                              job_named(job_name("another", 999999)), job_named("train"))
    wait_for(lambda: {state(j) for j in (unclaimed, theirs, own)} == {"RUNNING"},
             what="the jobs running")
    reconciler.slurm_jobs.sweep(reconciler.instance)  # the pass's sweep, due or not
    wait_for(lambda: state(unclaimed) != "RUNNING", what="the unclaimed job cancelled")
    assert [state(j) for j in (claimed.slurm_job, theirs, own)] == ["RUNNING"] * 3
    for job in (theirs, own):
        cluster.run("scancel", str(job))


def test_a_job_whose_id_never_got_stored_is_adopted_not_submitted_again(lab, cluster,
                                                                        test_image):
    """A crash (or a lost answer) between the submit and storing its id: the next pass finds
    the job by its name and carries on with it."""
    renter, reconciler, _slurm = lab
    task = submit(renter, test_image, replicas=2, argv=("sleep", "600"))
    lost = reconciler.slurm_jobs.client_for(_slurm).submit(
        components(task, reconciler.instance, inventory.spec_needs()), SCRIPT)
    task = drive(reconciler, task, lambda t: t.state == "running", "the task running")
    assert task.slurm_job == lost
    status, answer = cluster.request("GET", "/jobs")
    assert [j["job_id"] for j in answer["jobs"] if j["name"] == job_name(
        reconciler.instance, task.id) and j["job_state"] == "RUNNING"
        and not j["het_job_offset"]] == [lost]


def test_a_job_slurm_refuses_fails_the_task_with_slurms_words(lab, test_image):
    renter, reconciler, _slurm = lab
    task = submit(renter, test_image, replicas=1, argv=("true",))
    # The spec grew since (as the portal lets no renter ask) past any node's memory: Slurm
    # refuses the job, and no retry would change that.
    ResourceSpec.update(memory_mib=64 * 1024).where(ResourceSpec.name == "two").execute()
    reconciler.run()
    task = Task.get_by_id(task.id)
    (replica,) = Replica.select().where(Replica.task == task)
    assert (task.state, replica.state, task.slurm_job) == ("failed", "failed", None)
    assert english(replica.reason).startswith("Slurm refused its job: ")
    assert "configuration is not available" in english(replica.reason)


def test_a_cluster_that_stops_answering_holds_its_tasks_and_says_so(lab, test_image):
    renter, reconciler, slurm = lab
    running = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    running = drive(reconciler, running, lambda t: t.state == "running", "a task running")
    rest_url = slurm.rest_url
    SlurmCluster.update(rest_url=f"{rest_url}.gone").where(SlurmCluster.id == slurm.id).execute()
    waiting = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    for _ in range(3):
        reconciler.run()
    waiting, running = Task.get_by_id(waiting.id), Task.get_by_id(running.id)
    assert english(waiting.reason).startswith("waiting: Slurm cluster lab does not answer")
    assert (waiting.state, waiting.slurm_job) == ("pending", None)
    assert (running.state, running.reason) == ("running", "")  # its containers run on
    SlurmCluster.update(rest_url=rest_url).where(SlurmCluster.id == slurm.id).execute()
    drive(reconciler, waiting, lambda t: t.state == "running", "the waiting task running")


def test_kill_9_of_hourglass_then_a_restart_carries_on_from_the_stored_jobs(
        cluster, live_server_factory, podman_service, test_image):
    """All real: ``serve`` (gunicorn, the scheduler) set up through the API, a task running
    and another waiting in Slurm when the server gets SIGKILL; the next server adopts both
    jobs by their stored ids (no second job, no container started twice) and nothing is
    left once both are stopped."""
    env = {"HOURGLASS_TICK_SECONDS": "0.5", "HOURGLASS_DISCOVERY_SECONDS": "1",
           "HOURGLASS_LEASE_SECONDS": "3"}
    first = live_server_factory(accounts=True, **env)
    first.flask("user", "add", "lena", "--role", "renter", "--group", "lab", "--password-stdin",
                stdin=PASSWORD)
    fund_on(first, "lena")
    miner = Api(first, first.flask("token", "create", "mina").stdout.strip())
    renter = Api(first, first.flask("token", "create", "lena").stdout.strip())
    first.start()
    servers = [first]
    try:
        miner("POST", "/slurm-clusters", 201, json={
            "name": "lab", "rest_url": f"unix://{cluster.rest}",
            "podman_url": podman_service.url, "host_root": f"{cluster.root}/{{node}}"})
        miner("POST", "/pools", 201, json={"name": "tpu", "groups": ["lab"], "slurm": {
            "cluster": "lab", "partition": PARTITION}})
        wait_for(lambda: sorted(n["name"] for n in miner("GET", "/nodes")
                                if n["ready"] and len(n["chips"]) == 3)
                 == ["lab-node1", "lab-node2"], timeout=30, interval=0.2,
                 what="discovery to find both compute nodes")
        miner("POST", "/resources", 201, json={"name": "TPU 1684X", "kind": "sophgo.com/bm1684x"})
        miner("POST", "/specs", 201, json={"name": "two", "cpu": "1", "memory_gb": "0.25",
                                           "price": "1", "resources": {"TPU 1684X": 2}})

        def submit_task(name, replicas):
            return renter("POST", "/tasks", 201, json={
                "name": name, "image": test_image, "argv": ["sleep", "600"], "pool": "tpu",
                "subtasks": [{"role": "worker", "spec": "two", "replicas": replicas}]})["id"]

        def task(task_id):
            return renter("GET", f"/tasks/{task_id}")

        running = submit_task("running", 2)
        before = wait_for(lambda: (t := task(running))["state"] == "running" and t,
                          timeout=30, interval=0.2, what="the first task running")
        waiting = submit_task("waiting", 1)
        wait_for(lambda: task(waiting)["reason"]
                 == f"waiting for resources in partition {PARTITION}", timeout=30,
                 interval=0.2, what="the second task waiting with Slurm's reason")
        jobs = dict(_stored_jobs(first))

        first.kill()  # SIGKILL to gunicorn's master and workers: no clean-up at all
        second = live_server_factory(**env)
        servers.append(second.start())
        renter.server = second
        for _ in range(4):  # a few of the new leader's passes: nothing submitted or started twice
            now = task(running)
            assert now["state"] == "running"
            assert [r["started_ns"] for r in now["replicas"]] == [
                r["started_ns"] for r in before["replicas"]]
            assert dict(_stored_jobs(second)) == jobs
            assert sorted(_slurm_jobs(cluster, instance_of(second))) == sorted(jobs.values())
            time.sleep(0.5)

        renter("POST", f"/tasks/{running}/stop")
        wait_for(lambda: task(waiting)["state"] == "running", timeout=60, interval=0.2,
                 what="the waiting task to run once the first one's job is cancelled")
        renter("POST", f"/tasks/{waiting}/stop")
        wait_for(lambda: all(done for _, done in _stored_jobs(second, done=True)), timeout=30,
                 interval=0.2, what="both jobs done")
        wait_for(lambda: not _slurm_jobs(cluster, instance_of(second)), timeout=30,
                 what="no job of ours left in Slurm")
        for job in jobs.values():
            assert running_containers_of(podman_service, job) == []
        assert "The ledger is consistent." in second.flask("billing", "verify").stdout
    except BaseException:
        for server in servers:
            print(f"--- log of the server on {server.url} ---\n{server.log()}")
        raise
    finally:
        cluster.settle()


def _stored_jobs(server, done=False):
    """[(task id, its Slurm job id, or whether it is done)] in a live server's database."""
    column = "slurm_job_done" if done else "slurm_job"
    path = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT id, {column} FROM tasks ORDER BY id").fetchall()


def _slurm_jobs(cluster, instance):
    """The ids of the jobs of Hourglass instance ``instance`` that Slurm still runs or holds
    (a heterogeneous job's by its leader's id)."""
    _status, answer = cluster.request("GET", "/jobs")
    return [job["job_id"] for job in answer["jobs"]
            if job["name"].startswith(f"hourglass-{instance}-") and not job["het_job_offset"]
            and job["job_state"] in ("PENDING", "RUNNING")]


def test_the_pools_per_user_limits_hold_before_anything_goes_to_slurm(lab, test_image):
    renter, reconciler, _slurm = lab
    set_pool_limits(Pool.get(Pool.name == "tpu"), max_chips_per_user=2)
    task = submit(renter, test_image, argv=("sleep", "600"))  # 2 replicas of 2 chips
    reconciler.run()
    task = Task.get_by_id(task.id)
    assert reason_text(task.reason) == "needs 4 chips, more than your limit of 2 in pool tpu"
    assert task.slurm_job is None and task.state == "pending"


def test_slurms_time_limit_ends_the_task_and_leaves_no_container_running(
        lab, cluster, podman_service, test_image):
    renter, reconciler, _slurm = lab
    task = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    task = drive(reconciler, task, lambda t: t.state == "running", "the task running")
    # As if its time limit had been a second: slurmctld times it out at its next check.
    cluster.run("scontrol", "update", f"jobid={task.slurm_job}", "timelimit=0:01")
    task = drive(reconciler, task, lambda t: t.state not in ("pending", "running"),
                 "the task ended by Slurm's time limit", timeout=120)
    assert english(task.stop_reason) in (
        f"its Slurm job {task.slurm_job} ended (TIMEOUT)",
        f"its Slurm job {task.slurm_job} was ended by Slurm (a time limit, scancel or a node "
        "failure)")
    assert running_containers_of(podman_service, task.slurm_job) == []
    drive(reconciler, task, lambda t: t.slurm_job_done, "the job done")
    assert all(not list(r.chips) and r.finished_ns
               for r in Replica.select().where(Replica.task == task))
    assert ledger.verify() == []


def test_a_podman_pool_runs_beside_the_slurm_pool(lab, podman_service, test_image):
    renter, reconciler, _slurm = lab
    save_spec(None, parse_spec("plain", "0.1", "0.125", "1", {}))
    on_slurm = submit(renter, test_image, replicas=1, argv=("sleep", "600"))
    on_podman = create_task(renter, "here", test_image, ["sleep", "600"], {}, "default",
                            [("main", "plain", 1)])
    for task in (on_slurm, on_podman):
        drive(reconciler, task, lambda t: t.state == "running", f"task {task.name} running")
    (here,) = Replica.select(Replica, Node).join(Node).where(Replica.task == on_podman)
    assert here.node.source == "local" and Task.get_by_id(on_podman.id).slurm_job is None
    (there,) = Replica.select(Replica, Node).join(Node).where(Replica.task == on_slurm)
    assert there.node.slurm_cluster_id is not None
    for task in (on_slurm, on_podman):
        request_stop(Task.get_by_id(task.id))
    drive(reconciler, on_podman, lambda t: t.state == "stopped", "the Podman task stopped")
    drive(reconciler, on_slurm, lambda t: t.slurm_job_done, "the Slurm job done")
    assert ledger.verify() == []


def test_a_job_that_starts_once_the_balance_is_short_is_given_back(lab, cluster, test_image):
    """The balance is checked again when Slurm starts a job that waited: one that no longer
    covers the start gives the chips back, and the task waits as on any pool until it does."""
    renter, reconciler, _slurm = lab
    first, second = waiting_behind_a_running_task(renter, reconciler, test_image)
    waited = second.slurm_job
    balance = User.get_by_id(renter.id).balance
    ledger.adjust(User.get_by_id(renter.id), -(balance - 1), None, "spent elsewhere")
    request_stop(Task.get_by_id(first.id))
    second = drive(reconciler, second, lambda t: t.slurm_job is None, "the job given back",
                   timeout=90)
    assert english(second.reason).startswith("your balance (")
    assert second.state == "pending"
    wait_for(lambda: job_of_id(cluster, waited)["job_state"] != "RUNNING",
             what="the given-back job cancelled")
    fund(User.get_by_id(renter.id))
    drive(reconciler, second, lambda t: t.state == "running", "the second task running")
    assert Task.get_by_id(second.id).slurm_job not in (None, waited)
    assert ledger.verify() == []


def job_of_id(cluster, job):
    """Job ``job`` (its leader) as slurmrestd shows it."""
    return cluster.request("GET", f"/job/{job}")[1]["jobs"][0]
