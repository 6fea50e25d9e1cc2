"""Task submissions per second through the API against a bare Flask endpoint, same database.

Starts ``flask --app app serve`` on a fresh instance as ``make run`` does (its own Podman
service, the scheduler on, gunicorn gthread with ``HOURGLASS_WORKERS`` x
``HOURGLASS_THREADS``), makes a renter with an API token and a spec, then cordons the
local node: every submission still wakes the scheduler's leader, whose pass looks at every
pending task and places none, so the figure is the portal's (body and rules, the balance,
the task's rows and events, the wake), not Podman's. ``--threads`` threads, each with its
own keep-alive session, POST ``--tasks`` tasks to ``/api/v1/tasks`` with the token.

Baseline in the same run, once Hourglass has stopped: a minimal Flask app with one POST
route that reads the same JSON body and inserts one row into a scratch table of the same
SQLite database through peewee, with ``portal.db``'s connection settings (WAL, IMMEDIATE
transactions, a connection per request), served by the same gunicorn worker class,
workers and threads; the same threads POST the same bodies as many times.

Prints submissions per second of both, their latencies, and the ratio (target: >= 0.5).

    .venv/bin/python bench/submissions.py [--tasks 300] [--threads 8]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import flask, free_port, p90, wait  # noqa: E402

IMAGE = "localhost/hourglass-probe:latest"  # busybox, built by `flask --app app images probe`
WARM_UP = 8  # requests before the clock starts, on each side
BARE_APP = '''\
"""One POST route inserting one row, on Hourglass's database with its connection settings."""

import os
from datetime import UTC, datetime

from flask import Flask, request
from peewee import AutoField, CharField, DateTimeField, Model

from portal.db import open_database

database = open_database(os.environ["DATABASE_URL"])


class Submission(Model):
    id = AutoField()
    name = CharField(max_length=96)
    at = DateTimeField()

    class Meta:
        database = database
        table_name = "bench_submissions"


with database.connection_context():
    database.create_tables([Submission], safe=True)
app = Flask(__name__)


@app.post("/submit")
def submit():
    body = request.get_json()
    with database.connection_context(), database.atomic():
        row = Submission.create(name=body["name"], at=datetime.now(UTC))
    return {"id": row.id}, 201
'''


def body(n):
    return {"name": f"bench-{n}", "image": IMAGE, "argv": ["true"], "pool": "default",
            "subtasks": [{"role": "main", "spec": "cpu", "replicas": 1}]}


def hammer(url, headers, count, threads, first=0):
    """POST ``count`` bodies to ``url`` from ``threads`` threads (keep-alive sessions);
    (seconds from the first to the last answer, each request's seconds). Any answer but 201
    ends the bench."""
    numbers = iter(range(first, first + count))
    lock, latencies, errors = threading.Lock(), [], []
    barrier = threading.Barrier(threads + 1)

    def worker():
        session = requests.Session()
        barrier.wait()
        while True:
            with lock:
                n = next(numbers, None)
            if n is None or errors:
                return
            before = time.perf_counter()
            response = session.post(url, json=body(n), headers=headers, timeout=60)
            took = time.perf_counter() - before
            if response.status_code != 201:
                errors.append(f"{response.status_code}: {response.text[:300]}")
            with lock:
                latencies.append(took)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} submission(s) refused, e.g. {errors[0]}")
    return elapsed, latencies


def serve(argv, env, url):
    """Start ``argv`` in a session of its own; return the process once ``url`` answers."""
    server = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    wait(lambda: _answers(url, server), timeout=120, every=0.1)
    return server


def stop(server):
    os.killpg(server.pid, signal.SIGINT)
    server.wait(60)


def _answers(url, server):
    if server.poll() is not None:
        raise SystemExit(f"{server.args} exited with {server.returncode}")
    try:
        requests.get(url, timeout=2)
        return True
    except (requests.ConnectionError, requests.Timeout):  # a worker still starting
        return False


def hourglass(env, url, tasks, threads):
    miner = {"Authorization": f"Bearer {flask(env, 'token', 'create', 'mina')}"}
    renter = {"Authorization": f"Bearer {flask(env, 'token', 'create', 'rene')}"}
    server = serve([sys.executable, "-m", "flask", "--app", "app", "serve"], env,
                   f"{url}/healthz")
    try:
        nodes = wait(lambda: [n for n in requests.get(f"{url}/api/v1/nodes", headers=miner,
                                                      timeout=10).json() if n["ready"]],
                     timeout=120, every=0.5)
        spec = {"name": "cpu", "cpu": "0.1", "memory_gb": "0.0625", "price": "1",
                "resources": {}}
        requests.post(f"{url}/api/v1/specs", json=spec, headers=miner,
                      timeout=10).raise_for_status()
        requests.patch(f"{url}/api/v1/nodes/{nodes[0]['id']}", json={"cordoned": True},
                       headers=miner, timeout=10).raise_for_status()
        hammer(f"{url}/api/v1/tasks", renter, WARM_UP, threads, first=-WARM_UP)
        return hammer(f"{url}/api/v1/tasks", renter, tasks, threads)
    finally:
        stop(server)


def bare(env, folder, url, tasks, threads):
    (folder / "bare.py").write_text(BARE_APP)
    workers, per_worker = env.get("HOURGLASS_WORKERS", "1"), env.get("HOURGLASS_THREADS", "32")
    port = url.rsplit(":", 1)[1]
    # serve's own settings: gthread, its workers and threads, a 10 s grace, 5 s keep-alive,
    # no control socket.
    argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", workers, "--threads",
            per_worker, "--graceful-timeout", "10", "--keep-alive", "5", "--no-control-socket",
            "-b", f"127.0.0.1:{port}", "--chdir", str(folder), "bare:app"]
    env = {**env, "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"sqlite:///{Path(env['HOURGLASS_INSTANCE']) / 'hourglass.db'}"}
    server = serve(argv, env, f"{url}/")
    try:
        hammer(f"{url}/submit", {}, WARM_UP, threads, first=-WARM_UP)
        return hammer(f"{url}/submit", {}, tasks, threads)
    finally:
        stop(server)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    instance = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOURGLASS_")}
    env.update(HOURGLASS_INSTANCE=str(instance), HOST="127.0.0.1", PORT=str(port))
    for name in ("HOURGLASS_WORKERS", "HOURGLASS_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    url = f"http://127.0.0.1:{port}"
    try:
        flask(env, "images", "probe")
        flask(env, "db", "upgrade")
        flask(env, "user", "add", "mina", "--role", "miner", "--password-stdin",
              stdin="bench-pass")
        flask(env, "user", "add", "rene", "--role", "renter", "--password-stdin",
              stdin="bench-pass")
        flask(env, "billing", "recharge", "rene", "1000000")
        ours, ours_each = hourglass(env, url, args.tasks, args.threads)
        base, base_each = bare(env, instance, url, args.tasks, args.threads)
    finally:
        shutil.rmtree(instance, ignore_errors=True)
    med = statistics.median
    print(f"{args.tasks} POSTs from {args.threads} threads, gunicorn gthread "
          f"{env.get('HOURGLASS_WORKERS', '1')} worker(s) x {env.get('HOURGLASS_THREADS', '32')}"
          f" threads, SQLite")
    print(f"hourglass POST /api/v1/tasks: {args.tasks / ours:6.1f}/s  "
          f"median {med(ours_each) * 1000:.1f} ms  p90 {p90(ours_each) * 1000:.1f} ms")
    print(f"bare one-row insert:          {args.tasks / base:6.1f}/s  "
          f"median {med(base_each) * 1000:.1f} ms  p90 {p90(base_each) * 1000:.1f} ms")
    print(f"ratio (submissions per second, hourglass / bare): {base / ours:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
