"""Placement throughput: one pass over 10,000 pending replicas on 500 simulated nodes.

Builds one seeded snapshot: 500 nodes (40 % with 6 TPU chips, 30 % with 8 GPUs,
30 % CPU-only; some chips and CPU already taken, 5 % not schedulable), and
tasks of 1-8 replicas in one or two subtasks of 0-2 chips each, up to 10,000
replicas in all, from 50 users with a per-user limit in every pool; nobody
has waited long enough to reserve a pool, so every task is tried. A second
snapshot makes every node 8 times larger, so nearly every task is placed:
the most work a pass can have. For each, times ``scheduler.placement.place``
(gang, best fit, limits, reasons) against a naive first fit written here
(each replica on the first node with room; no gang, no best fit, no limits)
over the same input in the same run, and prints the median of each, the
ratio, and how many replicas each placed. Target: under 1 s for one pass.

    .venv/bin/python bench/placement.py [--runs 5] [--pools 1] [--seed 1]
"""

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.placement import (  # noqa: E402
    Limits,
    NodeState,
    ReplicaNeed,
    TaskRequest,
    Usage,
    place,
)

TPU, GPU = "sophgo.com/bm1684x", "nvidia.com/gpu"
NODE_KINDS = [  # (share, cpu_millis, memory_mib, chip kind, chips)
    (0.4, 32_000, 131_072, TPU, 6),
    (0.3, 64_000, 524_288, GPU, 8),
    (0.3, 32_000, 131_072, None, 0),
]


def make_nodes(rng, count, pools, scale):
    """Nodes spread over ``pools`` pools, partly used already, a few unschedulable;
    ``scale`` multiplies every node's chips, CPU and memory."""
    nodes = []
    for i in range(count):
        _, cpu, mem, kind, chips = rng.choices(NODE_KINDS, [k[0] for k in NODE_KINDS])[0]
        cpu, mem, chips = cpu * scale, mem * scale, chips * scale
        taken = rng.choice([0, 0, 0, 1, 2]) if chips else 0
        free = tuple(sorted(rng.sample(range(chips), chips - taken)))
        nodes.append(NodeState(
            id=i + 1, pool_id=i % pools + 1, schedulable=rng.random() >= 0.05,
            cpu_millis_free=cpu - taken * 4000, memory_mib_free=mem - taken * 16_384,
            chips_free={kind: free} if kind else {}, cpu_millis_total=cpu,
            memory_mib_total=mem, chips_total={kind: chips} if kind else {}))
    return nodes


def make_tasks(rng, replicas, pools, start):
    """Tasks of 1-8 replicas in one or two subtasks, until ``replicas`` replicas in all."""
    tasks, left = [], replicas
    while left:
        count = min(left, rng.randint(1, 8))
        left -= count
        subtasks = [(rng.choice([TPU, GPU]), rng.randint(0, 2), rng.choice([1000, 2000, 4000]),
                     rng.choice([2048, 4096, 8192])) for _ in range(rng.randint(1, 2))]
        needs = []
        for r in range(count):
            kind, chips, cpu, mem = subtasks[r % len(subtasks)]
            needs.append(ReplicaNeed((len(tasks) + 1, r), cpu, mem, {kind: chips} if chips else {}))
        tasks.append(TaskRequest(
            task_id=len(tasks) + 1, user_id=rng.randint(1, 50), pool_id=rng.randint(1, pools),
            submitted_at=start + timedelta(seconds=rng.randint(0, 1200)), replicas=tuple(needs)))
    return tasks


def first_fit(nodes, tasks):
    """The baseline: each replica, in submission order, on the first node with room."""
    free = {n.id: [n.cpu_millis_free, n.memory_mib_free,
                   {k: list(v) for k, v in n.chips_free.items()}]
            for n in nodes if n.schedulable}
    by_pool = {}
    for n in nodes:
        if n.schedulable:
            by_pool.setdefault(n.pool_id, []).append(n.id)
    placed = {}
    for task in sorted(tasks, key=lambda t: (t.submitted_at, t.task_id)):
        for need in task.replicas:
            for node_id in by_pool.get(task.pool_id, ()):
                room = free[node_id]
                if (room[0] >= need.cpu_millis and room[1] >= need.memory_mib
                        and all(len(room[2].get(k, ())) >= c for k, c in need.chips.items())):
                    room[0] -= need.cpu_millis
                    room[1] -= need.memory_mib
                    chips = {}
                    for k, c in need.chips.items():
                        chips[k], room[2][k] = room[2][k][:c], room[2][k][c:]
                    placed[need.key] = (node_id, chips)
                    break
    return placed


def timed(fn, runs):
    """Median seconds of ``runs`` calls, and the last call's result."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def scenario(name, args, scale, limits):
    """Time both placements on one seeded snapshot and print a line each."""
    rng = random.Random(args.seed)
    start = datetime(2025, 1, 1)
    nodes = make_nodes(rng, args.nodes, args.pools, scale)
    tasks = make_tasks(rng, args.replicas, args.pools, start)
    pools = range(1, args.pools + 1)
    usage = {(u, p): Usage(chips=rng.randint(0, 4), replicas=rng.randint(0, 4))
             for u in range(1, 51) for p in pools}
    now = start + timedelta(minutes=20)  # nobody has waited 30 minutes: all backfill
    ours, plan = timed(lambda: place(nodes, tasks, now=now, usage=usage,
                                     limits={p: limits for p in pools}), args.runs)
    naive, placed = timed(lambda: first_fit(nodes, tasks), args.runs)
    print(f"{name}: {args.nodes} nodes x{scale} in {args.pools} pool(s), {len(tasks)} tasks, "
          f"{sum(len(t.replicas) for t in tasks)} replicas, median of {args.runs} runs")
    print(f"  place (gang, best fit, limits): {ours * 1000:7.1f} ms, placed "
          f"{sum(len(a) for a in plan.assignments.values())} replicas of "
          f"{len(plan.assignments)} tasks, {len(plan.pending)} tasks pending")
    print(f"  naive first fit (baseline):     {naive * 1000:7.1f} ms, "
          f"placed {len(placed)} replicas")
    print(f"  ratio place / first fit: {ours / naive:.2f}; target place < 1000 ms: "
          f"{'met' if ours < 1 else 'MISSED'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pools", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--replicas", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    scenario("crowded (most tasks wait)", args, 1, Limits(max_chips=64, max_replicas=128))
    scenario("roomy (nearly every task fits)", args, 8, Limits(max_chips=1000, max_replicas=1000))


if __name__ == "__main__":
    main()
