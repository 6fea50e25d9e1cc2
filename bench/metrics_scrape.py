"""Time of one ``/metrics`` scrape at many replicas, against a bare request in the same run.

Builds an app on a fresh SQLite database with ``--nodes`` nodes of 8 chips,
``--replicas`` replicas (a quarter running on a chip each, a quarter pending,
the rest finished), ``--samples`` samples of each replica and each chip 15 s apart
(as the sampling job writes them; the latest are the gauges), and ``--ledger`` ledger
rows (1 in 100 a recharge, more than a lab makes) with their monthly totals, then
times ``GET /metrics`` against ``GET /login`` (a page with no data) and the
database's ``SELECT 1``. The histograms are in multiprocess mode, as under ``serve``.

    .venv/bin/python bench/metrics_scrape.py [--replicas 1000] [--samples 40]
        [--ledger 1000000] [--runs 50]
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

VALUES = 32000  # bound values per INSERT (SQLite's limit: 32766)


def build(nodes, replicas, samples, ledger_rows):
    os.environ["HOURGLASS_INSTANCE"] = tempfile.mkdtemp(prefix="hg-bench-")
    from app import create_app
    from portal import db, metrics
    from portal.models import (
        ChipSample,
        LedgerEntry,
        Node,
        NodeChip,
        Pool,
        Replica,
        ReplicaChip,
        ReplicaSample,
        ResourceSpec,
        Subtask,
        Task,
        UsageMonth,
        User,
        utcnow,
    )

    metrics.use_multiprocess(Path(os.environ["HOURGLASS_INSTANCE"]) / "prometheus-multiproc")
    app = create_app({"WTF_CSRF_ENABLED": False})
    with app.app_context(), db.database.atomic():
        db.upgrade()
        users = [User.create(name=f"r{i}", role="renter", password_hash="-") for i in range(20)]
        spec = ResourceSpec.create(name="s", cpu_millis=1000, memory_mib=512,
                                   price_per_hour=1_000_000)
        chips = []
        for n in range(nodes):
            node = Node.create(name=f"node{n:03d}", url=f"ssh://root@10.0.0.{n}/p.sock",
                               ready=n % 10 != 0)
            chips += [NodeChip.create(node=node, kind="sophgo.com/bm1684x", index=i,
                                      device=f"/dev/bm-sophon{i}") for i in range(8)]
        pool = Pool.get(Pool.is_default)
        now = utcnow()
        held = {}
        for r in range(replicas):
            task = Task.create(user=users[r % 20], name=f"t{r}", image="busybox", pool=pool)
            subtask = Subtask.insert(task=task, role="main", spec=spec, count=1).execute()
            state = ("running", "pending", "succeeded", "failed")[r % 4]
            replica = Replica.create(task=task, subtask=subtask, index=0, state=state,
                                     created_at=now - timedelta(seconds=r))
            if state == "running" and chips:
                chip = chips.pop()
                ReplicaChip.create(replica=replica, chip=chip, slot=0)
                held[chip.id] = replica.id
        at = now - timedelta(days=30)
        rows = [(users[i % 20].id, "recharge" if i % 100 == 0 else "charge",
                 1000 if i % 100 == 0 else -10, 0, at) for i in range(ledger_rows)]
        insert(LedgerEntry, [LedgerEntry.user, LedgerEntry.kind, LedgerEntry.amount,
                             LedgerEntry.balance_after, LedgerEntry.at], rows)
        for user in users:
            UsageMonth.create(user=user, month=at.date().replace(day=1),
                              charged=10 * ledger_rows // 20)
        # Last, so that the latest are fresh when the scrapes begin.
        now = utcnow()
        ats = [now - timedelta(seconds=15 * k) for k in reversed(range(samples))]
        replica_ids = [r for (r,) in Replica.select(Replica.id).tuples()]
        insert(ReplicaSample, [ReplicaSample.replica, ReplicaSample.at, ReplicaSample.cpu_cores,
                               ReplicaSample.memory_bytes],
               [(r, at, 0.5, 2**30) for at in ats for r in replica_ids])
        chip_ids = [c for (c,) in NodeChip.select(NodeChip.id).tuples()]
        insert(ChipSample, [ChipSample.chip, ChipSample.replica, ChipSample.at,
                            ChipSample.util_ratio, ChipSample.memory_used_bytes,
                            ChipSample.memory_total_bytes, ChipSample.temp_c, ChipSample.power_w],
               [(c, held.get(c), at, 0.5, 2**30, 12 * 2**30, 55.0, 20.0)
                for at in ats for c in chip_ids])
        timings = app.extensions["hourglass.timings"]
        for seconds in (0.5, 3, 40):
            timings.queue_wait.labels(pool.name).observe(seconds)
            timings.scheduler_pass.observe(seconds / 100)
            timings.notebook_start.observe(seconds * 2)
    return app


def insert(model, fields, rows):
    """``rows`` (tuples of ``fields``) into ``model``'s table, ``VALUES`` values at a time."""
    step = VALUES // len(fields)
    for start in range(0, len(rows), step):
        model.insert_many(rows[start:start + step], fields=fields).execute()


def timed(call, runs):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    app = build(args.nodes, args.replicas, args.samples, args.ledger)
    client = app.test_client()
    from portal import db

    def get(path):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return response

    for path in ("/login", "/metrics"):  # warm the template cache and the connection
        get(path)
    text = get("/metrics").data
    assert not args.samples or (b"hourglass_replica_cpu_cores{" in text
                                and b"hourglass_chip_power_watts{" in text), "stale samples"
    with app.app_context():
        select = timed(lambda: db.database.execute_sql("SELECT 1").fetchall(), args.runs)
    base = timed(lambda: get("/login"), args.runs)
    scrape = timed(lambda: get("/metrics"), args.runs)
    size = len(get("/metrics").data)
    print(f"nodes: {args.nodes}, replicas: {args.replicas}, samples: {args.samples} per "
          f"replica and chip, ledger rows: {args.ledger}, runs: {args.runs} (medians)")
    print(f"SELECT 1 (database):         {select * 1e6:.0f} µs")
    print(f"GET /login (baseline):      {base * 1000:.1f} ms")
    print(f"GET /metrics ({size} bytes): {scrape * 1000:.1f} ms   ratio {scrape / base:.2f}")


if __name__ == "__main__":
    main()
