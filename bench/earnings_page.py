"""Time of the miner's Earnings page at 1,000,000 ledger rows, against the sign-in page in the
same run.

Builds an app on a fresh SQLite database with ``--rows`` ledger rows (1 in 100 a
recharge, the rest charges spread over ``--days`` days, ``--nodes`` nodes and
``--specs`` specs, a few on a removed node) and the daily earnings the ledger keeps
beside its charges (``EarningDay``), signs a miner in through the real form, and times
``GET /miner/machine-time/earnings`` against ``GET /login`` (the same base template, no
data), p50 and p95. For the figure before ``EarningDay``, it also times the page's old
query: the same sums over the ledger's charges.

    .venv/bin/python bench/earnings_page.py [--rows 1000000] [--runs 50]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSWORD = "bench-password"
BATCH = 10_000  # rows per executemany


def build(rows, days, nodes, specs):
    os.environ["HOURGLASS_INSTANCE"] = tempfile.mkdtemp(prefix="hg-bench-")
    from app import create_app
    from portal import db
    from portal.models import (
        EarningDay,
        EarningMonth,
        LedgerEntry,
        Node,
        ResourceSpec,
        User,
        utcnow,
    )
    from portal.users import create_user

    app = create_app({"WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.upgrade()
        create_user("mina", "miner", PASSWORD)
        users = [create_user(f"renter{n}", "renter", PASSWORD).id for n in range(20)]
        node_ids = [Node.create(name=f"node{n:03d}", url=f"ssh://root@10.0.0.{n}/p.sock").id
                    for n in range(nodes)] + [None]  # None: a removed node's rows
        spec_ids = [ResourceSpec.create(name=f"spec{n}", cpu_millis=1000, memory_mib=512,
                                        price_per_hour=1_000_000).id for n in range(specs)]
        now = utcnow()
        columns = (LedgerEntry.user, LedgerEntry.kind, LedgerEntry.amount,
                   LedgerEntry.balance_after, LedgerEntry.at, LedgerEntry.note,
                   LedgerEntry.spec, LedgerEntry.node)
        names = ", ".join(f'"{column.column_name}"' for column in columns)
        marks = ", ".join([db.database.param] * len(columns))
        sql = f'INSERT INTO "{LedgerEntry._meta.table_name}" ({names}) VALUES ({marks})'
        earned = {}
        with db.database.atomic():
            for first in range(0, rows, BATCH):
                batch = []
                for n in range(first, min(rows, first + BATCH)):
                    at = now - timedelta(seconds=n * days * 86_400 // rows)
                    if n % 100 == 0:
                        batch.append((users[n % 20], "recharge", 1000, 0, at, "", None, None))
                        continue
                    node, spec = node_ids[n % len(node_ids)], spec_ids[n % specs]
                    batch.append((users[n % 20], "charge", -1945, 0, at, "", spec, node))
                    key = (at.date(), node or 0, spec)
                    earned[key] = earned.get(key, 0) + 1945
                db.database.cursor().executemany(sql, batch)
            days_rows = [(day, node, spec, charged)
                         for (day, node, spec), charged in earned.items()]
            months = {}
            for day, node, spec, charged in days_rows:
                key = (day.replace(day=1), node, spec)
                months[key] = months.get(key, 0) + charged
            month_rows = [(*key, charged) for key, charged in months.items()]
            for model, table_rows, when in ((EarningDay, days_rows, EarningDay.day),
                                            (EarningMonth, month_rows, EarningMonth.month)):
                for first in range(0, len(table_rows), 1000):
                    model.insert_many(table_rows[first:first + 1000],
                                      fields=[when, model.node, model.spec,
                                              model.charged]).execute()
            User.update(balance=10**12).where(User.role == "renter").execute()
    return app, len(days_rows)


def ledger_sums():
    """The Earnings page's query before ``EarningDay``: its sums over the ledger."""
    from peewee import Case, fn

    from portal.ledger import month_start
    from portal.models import LedgerEntry

    month = Case(None, [(LedgerEntry.at >= month_start(), LedgerEntry.amount)], 0)
    return list(LedgerEntry.select(LedgerEntry.node, LedgerEntry.spec, fn.SUM(month),
                                   fn.SUM(LedgerEntry.amount))
                .where(LedgerEntry.kind == "charge")
                .group_by(LedgerEntry.node, LedgerEntry.spec).tuples())


def samples(call, runs):
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        found.append(time.perf_counter() - start)
    return found


def p95(values):
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--specs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--old-runs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    app, day_rows = build(args.rows, args.days, args.nodes, args.specs)
    print(f"built {args.rows} ledger rows, {day_rows} earning days "
          f"in {time.perf_counter() - started:.1f} s")
    from tests.support import login  # the real sign-in form

    client = app.test_client()
    login(client, "miner", "mina", PASSWORD)
    path = "/miner/machine-time/earnings"

    def get(url):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    for url in ("/login", path):  # warm the template cache and the connection
        get(url)
    base = samples(lambda: get("/login"), args.runs)
    page = samples(lambda: get(path), args.runs)
    with app.app_context():
        old = samples(ledger_sums, args.old_runs)
    med = statistics.median
    print(f"runs: {args.runs}; days {args.days}, nodes {args.nodes}, specs {args.specs}")
    print(f"GET /login (baseline):  p50 {med(base) * 1000:.1f} ms, p95 {p95(base) * 1000:.1f} ms")
    print(f"GET {path}: p50 {med(page) * 1000:.1f} ms, p95 {p95(page) * 1000:.1f} ms; "
          f"ratio to the baseline p95 {p95(page) / p95(base):.2f}")
    print(f"its old sums over the ledger ({args.old_runs} runs): "
          f"p50 {med(old) * 1000:.0f} ms, max {max(old) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
