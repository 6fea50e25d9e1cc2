"""Submit-to-running on a Slurm pool through Hourglass, against a bare ``sbatch`` of ``podman run``.

Starts, under a fresh instance folder and as root: a Podman service of its own, a real
two-node Slurm cluster with Hourglass's Epilog (``tests.slurm_cluster``, as the
integration tests run it; ``make test-packages`` installs Slurm), and Hourglass in this
process: the local node and the cluster's nodes discovered, pool "tpu" mapped to the
cluster's partition, a spec of 1 CPU, 256 MiB and 1 TPU chip, a funded renter of the pool's
group, and the app's own scheduler service (``SchedulerService``: passes on its tick and
woken by each submission, as ``flask --app app serve`` runs them).

Then N times: ``create_task`` of one replica running the probe image's ``sleep``, timed from
just before the call to the first poll (every 50 ms) that finds the replica "running" and
its container running; then stopped, its job done and both nodes idle before the next run.
Baseline in the same run, with the scheduler stopped: ``sbatch`` (same partition, CPUs,
memory and GRES) of a script that runs ``podman --url <service> run -d`` of the same image
and then sleeps, timed from just before ``sbatch`` to the first poll that finds the container
running; then its container removed, the job cancelled and both nodes idle. Both sides pay
Slurm's scheduling and Podman's start; Hourglass's container also gets its limits, labels,
init and chip. The first run of each side warms up and is left out.

Prints median and p95 of both, the ratio (target: median <= 1.2 x bare; printed, never
enforced), and the median of each side's steps: Slurm's job id known (Hourglass: stored on
the task), the allocation stored (Hourglass only), the container's StartedAt (Podman's own
time) and running seen. ``--tick`` sets HOURGLASS_TICK_SECONDS (default: Hourglass's own).
Everything it started is stopped and removed, even on failure; the instance folder too, but
after a failure it is kept for the daemons' logs.

    .venv/bin/python bench/slurm_submit.py [--runs 20] [--tick SECONDS]
"""

import argparse
import logging
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.common import flask, p95, wait  # noqa: E402
from portal import db, ledger, settings  # noqa: E402
from portal.models import Group, Membership, PoolGroup, Replica, SlurmCluster, Task  # noqa: E402
from portal.money import parse_amount  # noqa: E402
from portal.pools import create_pool, set_pool_slurm  # noqa: E402
from portal.specs import create_resource, parse_spec, save_spec  # noqa: E402
from portal.tasks import create_task, request_stop  # noqa: E402
from portal.users import create_user  # noqa: E402
from scheduler.discovery import Discovery  # noqa: E402
from scheduler.podman import PodmanBackend  # noqa: E402
from scheduler.podman_service import LocalPodmanService  # noqa: E402
from scheduler.slurm_discovery import discover_cluster  # noqa: E402
from tests.slurm_cluster import PARTITION, missing_programs, start_podman_cluster  # noqa: E402

IMAGE = "localhost/hourglass-probe:latest"  # busybox, built by `flask --app app images probe`
GRES = "tpu:bm1684x:1"
POLL = 0.05
TIMEOUT = 120  # seconds a run may take to start, or to end, before the bench gives up
TARGET = 1.2


def set_up(podman_url, cluster):
    """The renter of a Slurm pool "tpu" on ``cluster``'s partition with spec "one"."""
    db.upgrade()
    Discovery(podman_url, probe_image=IMAGE).run()
    slurm = SlurmCluster.create(name="lab", rest_url=f"unix://{cluster.rest}",
                                podman_url=podman_url, host_root=f"{cluster.root}/{{node}}")
    pool = create_pool("tpu")
    set_pool_slurm(pool, slurm, PARTITION, offered=[PARTITION])
    found = discover_cluster(slurm)
    if set(found.values()) != {""}:
        raise SystemExit(f"the cluster's nodes are not ready: {found}")
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec("one", "1", "0.25", "1", {tpu: "1"}))
    renter = create_user("rene", "renter", "bench-password-1")
    ledger.recharge(renter, parse_amount("1000000"), None, "bench funds")
    group = Group.create(name="lab")
    Membership.create(user=renter, group=group)
    PoolGroup.create(pool=pool, group=group)
    return renter


def hourglass_runs(runs, renter, backend, cluster):
    """Each run's steps, in seconds from just before ``create_task``."""
    samples = []
    for i in range(runs + 1):
        seen = {}
        before = time.time_ns()
        task = create_task(renter, f"bench-{i}", IMAGE, ["sleep", "600"], {}, "tpu",
                           [("main", "one", 1)])

        def running(task=task, seen=seen):
            replica = Replica.get(Replica.task == task.id)
            job = Task.get_by_id(task.id).slurm_job
            # An inspect waits while Podman starts the container: the time after it is when
            # the poll knew.
            state = backend.inspect(replica.container) if replica.state == "running" else None
            now = time.time_ns()
            if job is not None:
                seen.setdefault("job id known", now)
            if replica.state in ("starting", "running"):
                seen.setdefault("allocation stored", now)
            return (now, state.started.ns) if state and state.status == "running" else None

        seen["running seen"], seen["StartedAt"] = wait(running, timeout=TIMEOUT, every=POLL)
        if i:  # the first run warms up
            samples.append({step: (ns - before) / 1e9 for step, ns in seen.items()})
        request_stop(Task.get_by_id(task.id))
        wait(lambda task=task: Task.get_by_id(task.id).slurm_job_done, timeout=TIMEOUT,
             every=0.1)
        cluster.settle()
    return samples


def bare_runs(runs, backend, podman_url, cluster, folder):
    """Each run's steps, in seconds from just before ``sbatch``."""
    script = folder / "bare.sh"
    script.write_text("#!/bin/sh\n"
                      f'podman --url {shlex.quote(podman_url)} run -d --name "$1" '
                      f"{shlex.quote(IMAGE)} sleep 600 >/dev/null\n"
                      "exec sleep infinity\n")
    samples, names = [], []
    try:
        for i in range(runs + 1):
            name = f"hg-bench-bare-{os.getpid()}-{i}"
            names.append(name)
            before = time.time_ns()
            job = cluster.run("sbatch", "--parsable", "--job-name", name,
                              f"--partition={PARTITION}", "--ntasks=1", "--cpus-per-task=1",
                              "--mem=256M", f"--gres={GRES}", "--output=/dev/null",
                              f"--error={folder / name}.err", str(script), name
                              ).stdout.strip().split(";")[0]
            seen = {"job id known": time.time_ns()}

            def running(name=name):
                state = backend.inspect(name)
                now = time.time_ns()
                return (now, state.started.ns) if state and state.status == "running" else None

            seen["running seen"], seen["StartedAt"] = wait(running, timeout=TIMEOUT,
                                                           every=POLL)
            if i:
                samples.append({step: (ns - before) / 1e9 for step, ns in seen.items()})
            backend.remove(name)
            cluster.run("scancel", job)
            cluster.settle()
    finally:
        for name in names:
            try:
                backend.remove(name)
            except Exception as error:  # already gone, or the service is gone
                print(f"removing {name}: {error}", file=sys.stderr)
    return samples


def remove_ours(backend, instance):
    """Remove the containers and networks of Hourglass's ``instance``."""
    for state in backend.list_ours(instance):
        backend.remove(state.handle)
    for network in backend.list_networks(instance):
        backend.remove_network(network)


def report(name, samples):
    values = [s["running seen"] for s in samples]
    steps = "  ".join(f"{step} {statistics.median(s[step] for s in samples):.3f} s"
                      for step in samples[0] if step != "running seen")
    print(f"{name}: median {statistics.median(values):.3f} s  p95 {p95(values):.3f} s")
    print(f"    steps (median): {steps}")
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tick", type=float, help="HOURGLASS_TICK_SECONDS (default: "
                                                   "Hourglass's own)")
    args = parser.parse_args()
    # As `flask --app app serve` has it: not a line per tick that finds a pass running.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    if os.geteuid() != 0 or missing_programs():
        raise SystemExit(f"needs root and Slurm (make test-packages); missing: "
                         f"{', '.join(missing_programs()) or 'nothing'}")
    instance = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    for key in [k for k in os.environ if k.startswith("HOURGLASS_")]:
        del os.environ[key]
    # Undone in reverse order, each even when one before it fails.
    with ExitStack() as cleanup:
        podman = LocalPodmanService(instance).start()
        cleanup.callback(podman.stop)
        os.environ.update(HOURGLASS_INSTANCE=str(instance), HOURGLASS_PODMAN_URL=podman.url,
                          HOURGLASS_SCHEDULER="off")  # started below, once the pool is set up
        if args.tick is not None:
            os.environ["HOURGLASS_TICK_SECONDS"] = str(args.tick)
        backend = PodmanBackend(podman.url)
        flask(dict(os.environ), "images", "probe")
        cluster = start_podman_cluster(instance / "slurm", podman.url)
        cleanup.callback(cluster.stop)
        app = create_app()
        ctx = app.app_context()
        ctx.push()
        cleanup.callback(ctx.pop)
        renter = set_up(podman.url, cluster)
        cleanup.callback(remove_ours, backend, settings.instance_id())
        service = app.extensions["hourglass.scheduler"]
        service.start()
        cleanup.callback(service.shutdown)
        tick = service.tick_seconds
        ours = hourglass_runs(args.runs, renter, backend, cluster)
        service.shutdown()  # the baseline runs without Hourglass's passes beside it
        bare = bare_runs(args.runs, backend, podman.url, cluster, instance)
    shutil.rmtree(instance, ignore_errors=True)
    print(f"runs: {args.runs} (after one warm-up each); scheduler tick {tick:g} s")
    ours = report("hourglass create_task -> replica running", ours)
    bare = report("sbatch of podman run  -> container running", bare)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"ratio (median): {ratio:.2f}  (p95): {p95(ours) / p95(bare):.2f}  "
          f"target median <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
