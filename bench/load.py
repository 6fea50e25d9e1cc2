"""Load: 50 renters and 2 miners on a live ``flask --app app serve``, driven by locust.

Starts ``serve`` on a fresh instance as ``make run`` does (its own Podman service, the
scheduler on, gunicorn gthread with ``HOURGLASS_WORKERS`` x ``HOURGLASS_THREADS``), makes
the miners and the funded renters with an API token each (one process, through the
portal's own functions), a spec of 0.1 CPU and 64 MiB once the local node is Ready, then
runs ``bench/locustfile.py`` headless from loopback (see its docstring for what the users
do: pages, task submissions through the API and the forms, polling, records). Afterwards
every task left is stopped and deleted, the server stopped, and ``flask --app app billing
verify`` run. Prints requests, failures, median, p95 and max per page or endpoint, what
became of the tasks, and the verify result; the CSV files, locust's and the server's logs
stay in ``--out``.

All users come from 127.0.0.1, so the sign-in rate limit (per address) is raised for the
run. The tasks run ``sleep 1`` in the busybox probe image (``flask --app app images
probe``).

    .venv/bin/python bench/load.py [--time 5m] [--renters 50] [--miners 2] [--out DIR]
"""

import argparse
import csv
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import flask, free_port, p90, wait  # noqa: E402

IMAGE = "localhost/hourglass-probe:latest"
ARGV = ["sleep", "1"]
PASSWORD = "load-bench-password"
FUNDS = "1000"
ENDED = {"succeeded", "failed", "stopped", "lost"}
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# Every virtual user signs in from 127.0.0.1: the per-address limit would refuse the 11th.
SERVER_ENV = {"HOURGLASS_LOGIN_RATE_LIMIT": "10000 per minute"}


# --- before the run ----------------------------------------------------------------------


def seed(env, config, renters, miners):
    """Make ``miners`` miners and ``renters`` funded renters, each with an API token, on the
    database ``env`` names (migrated already), in a process of its own; write their names
    and tokens to the JSON file ``config``."""
    subprocess.run([sys.executable, __file__, "--seed", str(config), "--renters", str(renters),
                    "--miners", str(miners)], env=env, cwd=ROOT, check=True)


def _seed_here(config, renters, miners):
    from app import create_app
    from portal.ledger import recharge
    from portal.money import parse_amount
    from portal.tokens import create_token
    from portal.users import create_user

    with create_app().app_context():
        def account(name, role):
            user = create_user(name, role, PASSWORD)
            if role == "renter":
                recharge(user, parse_amount(FUNDS), None, "load bench")
            return {"name": name, "id": user.id, "token": create_token(user, "load")[1]}

        made = {"password": PASSWORD,
                "miners": [account(f"load-miner-{n}", "miner") for n in range(miners)],
                "renters": [account(f"load-renter-{n:02d}", "renter") for n in range(renters)]}
    Path(config).write_text(json.dumps(made))


def prepare(url, config, image=IMAGE, argv=ARGV):
    """Once the local node is Ready, make the tasks' spec as a miner, and add the task's
    image, argv, spec and pool to ``config``."""
    made = json.loads(Path(config).read_text())
    miner = {"Authorization": f"Bearer {made['miners'][0]['token']}"}
    wait(lambda: any(node["ready"] for node in
                     requests.get(f"{url}/api/v1/nodes", headers=miner, timeout=10).json()),
         timeout=120, every=0.5)
    spec = {"name": "load", "cpu": "0.1", "memory_gb": "0.0625", "price": "1", "resources": {}}
    requests.post(f"{url}/api/v1/specs", json=spec, headers=miner,
                  timeout=10).raise_for_status()
    made.update(image=image, argv=argv, spec="load", pool="default")
    Path(config).write_text(json.dumps(made))


# --- the run -----------------------------------------------------------------------------


def run_locust(url, config, duration, out, spawn_rate=10):
    """Run the locustfile headless against ``url`` for ``duration`` ("30s", "5m"): the miners
    of ``config`` plus its renters as users. Its CSV files are ``out/load_*.csv``, its output
    ``out/locust.log``; returns its exit status (1 when any request failed)."""
    made = json.loads(Path(config).read_text())
    users = len(made["renters"]) + len(made["miners"])
    env = {**os.environ, "HOURGLASS_LOAD_CONFIG": str(config)}
    with open(Path(out) / "locust.log", "wb") as log:
        return subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
             "--host", url, "-u", str(users), "-r", str(spawn_rate), "-t", duration,
             "--csv", str(Path(out) / "load"), "--only-summary", "--stop-timeout", "5"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode


def stats(out):
    """locust's rows of ``out/load_stats.csv``, the "Aggregated" one last."""
    with open(Path(out) / "load_stats.csv", newline="") as f:
        return list(csv.DictReader(f))


def failures(out):
    """locust's ``out/load_failures.csv`` rows: method, name, error, occurrences."""
    path = Path(out) / "load_failures.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(rows):
    """The requests, failures, median, p95 and max per name, as text."""
    lines = [f"{'request':<48} {'count':>7} {'fails':>5} {'p50 ms':>7} {'p95 ms':>7} "
             f"{'max ms':>7}"]
    for row in rows:
        name = f"{row['Type']} {row['Name']}" if row["Type"] else row["Name"]
        lines.append(f"{name[:48]:<48} {row['Request Count']:>7} {row['Failure Count']:>5} "
                     f"{row['50%']:>7} {row['95%']:>7} {float(row['Max Response Time']):>7.0f}")
    return "\n".join(lines)


# --- after the run -----------------------------------------------------------------------


def settle(url, config, timeout=120):
    """Stop every renter's task that has not ended, wait until all have, delete them (the
    scheduler removes their containers and networks); the tasks' states, counted."""
    made = json.loads(Path(config).read_text())
    tokens = [{"Authorization": f"Bearer {r['token']}"} for r in made["renters"]]

    def tasks():
        return [(headers, found) for headers in tokens
                for found in requests.get(f"{url}/api/v1/tasks", headers=headers,
                                          timeout=30).json()]

    for headers, found in tasks():
        if found["state"] not in ENDED:
            requests.post(f"{url}/api/v1/tasks/{found['id']}/stop", headers=headers, timeout=30)
    deadline = time.monotonic() + timeout
    while True:
        left = tasks()
        if all(found["state"] in ENDED for _headers, found in left):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"tasks still not ended after {timeout} s")
        time.sleep(1)
    counted = {}
    for headers, found in left:
        counted[found["state"]] = counted.get(found["state"], 0) + 1
        requests.delete(f"{url}/api/v1/tasks/{found['id']}", headers=headers,
                        timeout=30).raise_for_status()
    return counted


def task_figures(instance):
    """(tasks submitted in all, deleted ones included; seconds from submission to StartedAt of
    each replica that started), from the SQLite database."""
    with closing(sqlite3.connect(Path(instance) / "hourglass.db")) as db:
        count = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
        rows = db.execute("SELECT t.submitted_at, r.started_ns FROM tasks t JOIN replicas r "
                          "ON r.task_id = t.id WHERE r.started_ns IS NOT NULL").fetchall()
    epoch = datetime(1970, 1, 1)
    return count, [started / 1e9 - (datetime.fromisoformat(at) - epoch).total_seconds()
                   for at, started in rows]


def instance_id(instance):
    """The id in this instance's container names and labels; None before the first start."""
    with closing(sqlite3.connect(Path(instance) / "hourglass.db")) as db:
        row = db.execute("SELECT value FROM settings WHERE key = 'instance_id'").fetchone()
    return row and row[0]


def containers_left(instance):
    """Names of the containers this instance still has (the scheduler removes a deleted
    task's within a pass or two)."""
    found = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter",
                            f"label=hourglass.instance={instance_id(instance)}"],
                           capture_output=True, text=True).stdout.split()
    return [name for name in found if "-canary" not in name]


def remove_leftovers(instance):
    """Remove whatever containers and task networks of this instance are still there."""
    if instance_id(instance) is None:
        return
    label = f"label=hourglass.instance={instance_id(instance)}"
    ids = subprocess.run(["podman", "ps", "-aq", "--filter", label], capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True)
    networks = subprocess.run(["podman", "network", "ls", "-q", "--filter", label],
                              capture_output=True, text=True).stdout.split()
    for network in networks:
        subprocess.run(["podman", "network", "rm", network], capture_output=True)


def verify(env):
    """``flask --app app billing verify``: (clean, what it printed)."""
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "billing", "verify"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


# --- the bench ---------------------------------------------------------------------------


def _up(url):
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code in (200, 503)
    except requests.ConnectionError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="5m", help="how long locust runs (30s, 5m...)")
    parser.add_argument("--renters", type=int, default=50)
    parser.add_argument("--miners", type=int, default=2)
    parser.add_argument("--out", help="folder for the CSV files and logs (default: a temp one)")
    parser.add_argument("--seed", help=argparse.SUPPRESS)  # seed()'s own process
    args = parser.parse_args()
    if args.seed:
        return _seed_here(args.seed, args.renters, args.miners)
    instance = Path(tempfile.mkdtemp(prefix="hg-load-"))
    out = Path(args.out or instance / "out")
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOURGLASS_")}
    env.update(SERVER_ENV, HOURGLASS_INSTANCE=str(instance), HOST="127.0.0.1", PORT=str(port))
    for name in ("HOURGLASS_WORKERS", "HOURGLASS_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    flask(env, "images", "probe")
    flask(env, "db", "upgrade")
    config = out / "accounts.json"
    seed(env, config, args.renters, args.miners)
    url = f"http://127.0.0.1:{port}"
    with open(out / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve"],
                                  env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait(lambda: _up(url), timeout=120, every=0.2)
        prepare(url, config)
        print(f"locust: {args.renters} renters, {args.miners} miners for {args.time} on {url} "
              f"(gunicorn gthread, {env.get('HOURGLASS_WORKERS', '1')} worker(s) x "
              f"{env.get('HOURGLASS_THREADS', '32')} threads)", flush=True)
        status = run_locust(url, config, args.time, out)
        rows = stats(out)
        states = settle(url, config)
        wait(lambda: not containers_left(instance), timeout=60, every=1)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(60)
        remove_leftovers(instance)
    clean, said = verify(env)
    total = rows[-1]
    resent = sum(int(row["Request Count"]) for row in rows if row["Type"] == "RESENT")
    count = int(total["Request Count"]) - resent
    print(table(rows))
    print(f"requests: {count} ({float(total['Requests/s']) * count / max(count + resent, 1):.1f}"
          f"/s), failures: {total['Failure Count']}, p95 of all: {total['95%']} ms; sent again "
          f"after the server closed a kept-alive connection unanswered: {resent} "
          f"(locust exit status {status})")
    for row in failures(out):
        print(f"  failure x{row['Occurrences']}: {row['Method']} {row['Name']}: {row['Error']}")
    count, waits = task_figures(instance)
    if waits:
        print(f"tasks: {count} submitted, {len(waits)} started; submission to StartedAt: median "
              f"{statistics.median(waits):.2f} s, p90 {p90(waits):.2f} s")
    print(f"after the run: the tasks left were stopped if still running, and ended as "
          f"{states}; all deleted")
    print(f"billing verify: {said}")
    print(f"CSV files and logs: {out}")
    if not clean or int(total["Failure Count"]):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
