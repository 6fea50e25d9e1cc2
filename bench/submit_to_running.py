"""Submit-to-running through Hourglass's HTTP API against a raw ``podman run -d``.

Starts ``flask --app app serve`` on a fresh instance (its own Podman service,
scheduler on), makes a renter with an API token and a CPU-only spec, then N
times: POST /api/v1/tasks with a busybox ``sleep`` and measure from just
before the request to the replica's container StartedAt (Podman's own time);
then stop it. Baseline in the same run: ``podman run -d`` of the same image
with the same containers.conf, from just before the command to its StartedAt.
Prints median and p90 of both, and the ratio.

Each run ends before the next begins on both sides (the baseline's ``podman rm -f``,
Hourglass's stop awaited), so neither start competes with the last one's teardown.
The spec has one whole CPU: with a fraction of one, the container's own start-up
(runc's init runs inside the container's cgroup) is throttled by its CPU quota,
which the limit-free baseline is not.

    .venv/bin/python bench/submit_to_running.py [--runs 30]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import flask, p90, wait  # noqa: E402
from scheduler.backend import Timestamp  # noqa: E402
from scheduler.podman_service import podman_env  # noqa: E402

IMAGE = "localhost/hourglass-probe:latest"  # busybox, built by `flask --app app images probe`








def hourglass_runs(runs, env, url):
    miner = {"Authorization": f"Bearer {flask(env, 'token', 'create', 'mina')}"}
    renter = {"Authorization": f"Bearer {flask(env, 'token', 'create', 'rene')}"}
    wait(lambda: any(n["ready"] for n in requests.get(f"{url}/api/v1/nodes",
                                                      headers=miner).json()))
    spec = {"name": "cpu", "cpu": "1", "memory_gb": "0.25", "price": "1", "resources": {}}
    requests.post(f"{url}/api/v1/specs", json=spec, headers=miner).raise_for_status()
    samples = []
    for i in range(runs):
        body = {"name": f"bench-{i}", "image": IMAGE, "argv": ["sleep", "30"],
                "pool": "default", "subtasks": [{"role": "main", "spec": "cpu", "replicas": 1}]}
        before = time.time_ns()
        response = requests.post(f"{url}/api/v1/tasks", json=body, headers=renter)
        response.raise_for_status()
        task = response.json()["id"]

        def started(task=task):
            replicas = requests.get(f"{url}/api/v1/tasks/{task}", headers=renter).json()
            return replicas["replicas"][0]["started_ns"]
        # StartedAt is Podman's own time, so how often we ask does not change the figure;
        # asking every 20 ms would only load this small machine while the container starts.
        samples.append((wait(started, every=0.1) - before) / 1e9)
        requests.post(f"{url}/api/v1/tasks/{task}/stop", headers=renter).raise_for_status()
        # Like the baseline's `podman rm -f`, the next run starts after this one is gone.
        wait(lambda task=task: requests.get(f"{url}/api/v1/tasks/{task}",
                                            headers=renter).json()["state"] == "stopped")
    return samples


def podman_runs(runs, conf):
    env = podman_env(conf)
    samples = []
    for _ in range(runs):
        before = time.time_ns()
        cid = subprocess.run(["podman", "run", "-d", IMAGE, "sleep", "30"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        raw = subprocess.run(["podman", "inspect", "-f", "{{.State.StartedAt}}", cid], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        samples.append((podman_started_ns(raw) - before) / 1e9)
        subprocess.run(["podman", "rm", "-f", "-t", "0", cid], env=env, capture_output=True)
    return samples


def podman_started_ns(raw):
    """``podman inspect``'s Go time ("2026-11-25 18:00:00.123456789 +0000 UTC") in ns."""
    day, clock, offset = raw.split()[:3]
    return Timestamp.parse(f"{day}T{clock}{offset[:3]}:{offset[3:]}").ns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    instance = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    port = 18000 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOURGLASS_")}
    env.update(HOURGLASS_INSTANCE=str(instance), PORT=str(port),
               HOURGLASS_DISCOVERY_SECONDS="30", HOURGLASS_TICK_SECONDS="1")
    flask(env, "images", "probe")
    flask(env, "db", "upgrade")
    flask(env, "user", "add", "mina", "--role", "miner", "--password-stdin", stdin="bench-pass")
    flask(env, "user", "add", "rene", "--role", "renter", "--password-stdin", stdin="bench-pass")
    flask(env, "billing", "recharge", "rene", "1000000")
    server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve"], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: requests.get(f"{url}/healthz").ok if _up(url) else False)
        ours = hourglass_runs(runs, env, url)
        raw = podman_runs(runs, instance / "containers.conf")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)
        subprocess.run(["podman", "rm", "-f", "-t", "0", "--filter", "label=hourglass.task"],
                       capture_output=True)
    med = statistics.median
    print(f"runs: {runs}")
    print(f"hourglass submit -> StartedAt: median {med(ours):.3f} s  p90 {p90(ours):.3f} s")
    print(f"podman run -d    -> StartedAt: median {med(raw):.3f} s  p90 {p90(raw):.3f} s")
    print(f"ratio (median): {med(ours) / med(raw):.2f}  (p90): {p90(ours) / p90(raw):.2f}")


def _up(url):
    try:
        requests.get(f"{url}/healthz", timeout=1)
        return True
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    main()
