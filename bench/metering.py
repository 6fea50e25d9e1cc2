"""One metering tick over many running replicas, and the billing pages at scale.

Builds an app on a fresh SQLite database (``--tasks`` tasks of one replica each,
``--running`` of them running, the rest ended and settled; ``--rows`` ledger
rows, half of them the bench renter's), then:

- times ``ledger.meter()`` after every running replica was seen one second
  more (each tick writes ``--running`` charges), against a baseline in the same
  run: one transaction inserting the same number of plain ledger-sized rows;
- times the renter overview, the renter's machine-time page and the miner's
  records page (signed in through the real forms, in-process), p50 and p95,
  and counts their SQL queries, against the sign-in page.

Containers are simulated: replicas are rows with the times the scheduler
would have written. Targets (issue 6): a tick < 200 ms at 1,000 running
replicas; each page p95 < 50 ms with a bounded number of queries.

    .venv/bin/python bench/metering.py [--tasks 10000] [--running 1000] [--rows 1000000]
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NS = 1_000_000_000
PASSWORD = "bench-password"


def build(tasks, running, rows):
    os.environ["HOURGLASS_INSTANCE"] = tempfile.mkdtemp(prefix="hg-bench-")
    from app import create_app
    from portal import db
    from portal.ledger import to_ns
    from portal.models import LedgerEntry, Pool, Replica, ResourceSpec, Subtask, Task, User, utcnow
    from portal.users import create_user

    app = create_app({"WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.upgrade()
        create_user("mina", "miner", PASSWORD)
        rene = create_user("rene", "renter", PASSWORD)
        others = [create_user(f"renter{n}", "renter", PASSWORD) for n in range(20)]
        spec = ResourceSpec.create(name="tpu", cpu_millis=1000, memory_mib=512,
                                   price_per_hour=7_000_000)
        pool = Pool.get(Pool.is_default)
        now = utcnow()
        start_ns = to_ns(now - timedelta(hours=1))
        with db.database.atomic():
            for first in range(0, tasks, 1000):
                count = min(1000, tasks - first)
                Task.insert_many([{"user": rene if n % 2 else others[n % 20], "name": f"t{n}",
                                   "image": "busybox", "pool": pool, "submitted_at": now,
                                   "state": "running" if n < running else "succeeded"}
                                  for n in range(first, first + count)]).execute()
            ids = [t for (t,) in Task.select(Task.id).order_by(Task.id).tuples()]
            for first in range(0, len(ids), 1000):
                chunk = ids[first:first + 1000]
                Subtask.insert_many([{"task": t, "role": "main", "spec": spec, "count": 1}
                                     for t in chunk]).execute()
            subtasks = dict(Subtask.select(Subtask.task, Subtask.id).tuples())
            for first in range(0, len(ids), 1000):
                chunk = ids[first:first + 1000]
                Replica.insert_many([{
                    "task": t, "subtask": subtasks[t], "index": 0, "created_at": now,
                    "state": "running" if n + first < running else "succeeded",
                    "started_ns": start_ns, "last_seen_at": now, "price_per_hour": 7_000_000,
                    "finished_ns": None if n + first < running else start_ns + 60 * NS,
                    "settled": n + first >= running}
                    for n, t in enumerate(chunk)]).execute()
            users = [rene.id] + [o.id for o in others]
            for first in range(0, rows, 10_000):
                LedgerEntry.insert_many([{
                    "user": rene.id if n % 2 else users[1 + n % 20], "kind": "charge",
                    "amount": -1945, "balance_after": 0, "at": now - timedelta(seconds=n),
                    "task": ids[n % len(ids)], "spec": spec, "price_per_hour": 7_000_000,
                    "note": ""} for n in range(first, min(rows, first + 10_000))]).execute()
            # Plenty of money, so no tick stops anything (the rows are not a real history).
            User.update(balance=10**12).where(User.role == "renter").execute()
    return app


def time_meter(app, running, ticks):
    from portal import ledger
    from portal.db import database
    from portal.models import Replica

    samples, baseline = [], []
    with app.app_context():
        seen = Replica.select(Replica.last_seen_at).where(Replica.state == "running").scalar()
        for tick in range(ticks):
            seen += timedelta(seconds=1)  # what refresh writes: each seen running a second on
            Replica.update(last_seen_at=seen).where(Replica.state == "running").execute()
            start = time.perf_counter()
            written = ledger.meter()
            samples.append(time.perf_counter() - start)
            assert written == running, (tick, written)
            start = time.perf_counter()
            with database.atomic():
                database.execute_sql("CREATE TEMP TABLE IF NOT EXISTS scratch "
                                     "(a INTEGER, b INTEGER, c INTEGER, d TEXT)")
                database.execute_sql("DELETE FROM scratch")
                database.cursor().executemany(
                    "INSERT INTO scratch VALUES (?, ?, ?, ?)",
                    [(n, n * 2, n * 3, "charge") for n in range(running)])
            baseline.append(time.perf_counter() - start)
    return samples, baseline


class QueryCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += 1


def time_pages(app, runs):
    from tests.support import login  # the real sign-in forms

    counter = QueryCounter()
    logger = logging.getLogger("peewee")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    results = {}
    renter, miner = app.test_client(), app.test_client()
    login(renter, "renter", "rene", PASSWORD)
    login(miner, "miner", "mina", PASSWORD)
    pages = [("sign-in page (baseline)", app.test_client(), "/login"),
             ("renter overview", renter, "/renter/"),
             ("renter machine-time", renter, "/renter/billing"),
             ("miner records", miner, "/miner/machine-time/records"),
             ("miner machine-time", miner, "/miner/machine-time")]
    for label, client, path in pages:
        first = client.get(path)
        if first.status_code != 200:
            results[label] = None
            continue
        samples, queries = [], []
        for _ in range(runs):
            counter.count = 0
            start = time.perf_counter()
            client.get(path)
            samples.append(time.perf_counter() - start)
            queries.append(counter.count)
        results[label] = (path, samples, max(queries))
    logger.removeHandler(counter)
    return results


def p95(values):
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    started = time.perf_counter()
    app = build(args.tasks, args.running, args.rows)
    print(f"built {args.tasks} tasks, {args.running} running, {args.rows} ledger rows "
          f"in {time.perf_counter() - started:.1f} s")
    ticks, baseline = time_meter(app, args.running, args.ticks)
    med = statistics.median
    print(f"metering tick ({args.running} charges): median {med(ticks) * 1000:.1f} ms, "
          f"max {max(ticks) * 1000:.1f} ms; baseline insert of {args.running} rows "
          f"{med(baseline) * 1000:.1f} ms; ratio {med(ticks) / med(baseline):.1f}")
    pages = time_pages(app, args.runs)
    base = pages["sign-in page (baseline)"][1]
    for label, found in pages.items():
        if found is None:
            print(f"{label}: not found (not built yet)")
            continue
        path, samples, queries = found
        print(f"{label} {path}: p50 {med(samples) * 1000:.1f} ms, p95 {p95(samples) * 1000:.1f}"
              f" ms, {queries} queries; ratio to sign-in p95 {p95(samples) / p95(base):.1f}")


if __name__ == "__main__":
    main()
