"""Time of the miner's Nodes page with many nodes, against the sign-in page in the same run.

Builds an app on a fresh SQLite database with ``--nodes`` simulated nodes
(6 chips each, as discovery would store them), signs a miner in through the
real form, and times ``GET /miner/nodes`` (whole page and the 5-second table
refresh) against ``GET /login`` (the same base template, no data).

    .venv/bin/python bench/nodes_page.py [--nodes 50] [--runs 50]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(nodes):
    os.environ["HOURGLASS_INSTANCE"] = tempfile.mkdtemp(prefix="hg-bench-")
    from app import create_app
    from portal import db
    from portal.models import Node, NodeChip
    from portal.users import create_user

    app = create_app({"WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.upgrade()
        create_user("mina", "miner", "bench-password")
        for n in range(nodes):
            node = Node.create(name=f"node{n:03d}", url=f"ssh://root@10.0.0.{n}/run/podman.sock",
                               source="manual", hostname=f"node{n:03d}", cpu_millis=64000,
                               memory_mib=262144, ready=n % 10 != 0, reason="bench",
                               labels='{"zone": "a"}')
            NodeChip.insert_many([{"node": node, "kind": "sophgo.com/bm1684x", "index": i,
                                   "device": f"/dev/bm-sophon{i}", "card": i // 3}
                                  for i in range(6)]).execute()
    return app


def timed(client, path, runs, headers=None):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path, headers=headers or {})
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    app = build(args.nodes)
    client = app.test_client()
    client.post("/miner/login", data={"name": "mina", "password": "bench-password"})
    refresh = {"HX-Request": "true", "HX-Target": "node-table"}
    for path in ("/login", "/miner/nodes"):  # warm the template cache
        client.get(path)
    base = timed(client, "/login", args.runs)
    page = timed(client, "/miner/nodes", args.runs)
    table = timed(client, "/miner/nodes", args.runs, refresh)
    print(f"nodes: {args.nodes}, runs: {args.runs} (medians)")
    print(f"GET /login (baseline):          {base * 1000:.1f} ms")
    print(f"GET /miner/nodes (page):        {page * 1000:.1f} ms   ratio {page / base:.2f}")
    print(f"GET /miner/nodes (table only):  {table * 1000:.1f} ms   ratio {table / base:.2f}")


if __name__ == "__main__":
    main()
