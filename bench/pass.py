"""One full scheduler pass over many running replicas, against bare inspects of them.

Starts a Podman service of its own, runs ``--replicas`` real busybox containers
as one-replica tasks on the local node through Hourglass (on a fresh SQLite
database), then times ``Reconciler.run()`` (``--passes`` times) and, in the
same run, ``--replicas`` bare ``inspect`` calls through the same API, the same
thread pool and the same per-node bound on engine calls. It prints:

- the pass (median, and its engine calls and database work apart: engine time
  is the wall time while at least one engine call of the pass was under way,
  database work the rest of it) against the bare inspects, as a ratio (target
  <= 1.5);
- the engine calls and SQL statements (UPDATEs apart) a pass makes, and its
  database work per running replica.

    .venv/bin/python bench/pass.py [--replicas 200] [--passes 10]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import wait  # noqa: E402

IMAGE = "localhost/hourglass-test-busybox:latest"


class Timed:
    """A backend whose every call records (start, end, name) in ``calls``."""

    def __init__(self, backend, calls):
        self._backend, self._calls = backend, calls

    def __getattr__(self, name):
        method = getattr(self._backend, name)

        def timed(*args, **kwargs):
            began = time.monotonic()
            try:
                return method(*args, **kwargs)
            finally:
                self._calls.append((began, time.monotonic(), name))
        return timed


def union(intervals):
    """Seconds covered by at least one of ``intervals``."""
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=200)
    parser.add_argument("--passes", type=int, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hg-bench-pass-"))
    os.environ["HOURGLASS_INSTANCE"] = str(folder / "instance")
    from scheduler.images import import_busybox
    from scheduler.podman import PodmanBackend
    from scheduler.podman_service import LocalPodmanService, podman_env

    service = LocalPodmanService(folder / "podman").start()
    env = podman_env(service.conf)
    backend = PodmanBackend(service.url)
    if not backend.image_exists(IMAGE):
        import_busybox(backend, IMAGE)
    os.environ["HOURGLASS_PODMAN_URL"] = service.url
    try:
        run(args, service.url)
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", "--filter", "label=hourglass.task"],
                       env=env, capture_output=True)
        service.stop()


def run(args, url):
    from app import create_app
    from portal import db
    from portal.ledger import recharge
    from portal.models import Replica, Task
    from portal.specs import parse_spec, save_spec
    from portal.tasks import create_task
    from portal.users import create_user
    from scheduler.discovery import Discovery
    from scheduler.reconcile import Reconciler

    app = create_app({"TESTING": True})
    with app.app_context():
        db.upgrade()
        Discovery(url, probe_image=IMAGE).run()
        save_spec(None, parse_spec("tiny", "0.01", "0.015625", "1", {}))
        renter = create_user("rene", "renter", "bench-password-1")
        recharge(renter, 10**12, None)
        reconciler = Reconciler(url)
        print(f"starting {args.replicas} busybox replicas...", flush=True)
        for n in range(args.replicas):
            create_task(renter, f"t{n}", IMAGE, ["sleep", "3600"], {}, "default",
                        [("main", "tiny", 1)])
        wait(lambda: reconciler.run() or Task.select().where(Task.state == "running").count()
             == args.replicas, timeout=600, every=0.5)
        handles = [c for (c,) in Replica.select(Replica.container).tuples()]

        calls, statements = [], []
        backends = {}

        def timed_backend(node, _plain=reconciler.backend):
            if node.url not in backends:
                backends[node.url] = Timed(_plain(node), calls)
            return backends[node.url]
        reconciler.backend = timed_backend
        execute = db.database.obj.execute_sql
        pass_thread = threading.get_ident()

        def counted(sql, *a, **k):
            if threading.get_ident() == pass_thread:
                statements.append(sql.split(None, 1)[0].upper())
            return execute(sql, *a, **k)
        db.database.obj.execute_sql = counted

        reconciler.run()  # warm: the sweep's first listing, connections
        passes = []
        for _ in range(args.passes):
            calls.clear()
            statements.clear()
            began = time.monotonic()
            reconciler.run()
            took = time.monotonic() - began
            engine = union([(a, b) for a, b, _ in calls])
            passes.append((took, engine, len(calls), len(statements),
                           statements.count("UPDATE")))
        db.database.obj.execute_sql = execute

        backend = reconciler.backend(Replica.select().first().node)._backend
        bare = []
        for _ in range(args.passes):
            began = time.monotonic()
            list(reconciler.threads.map(backend.inspect, handles))
            bare.append(time.monotonic() - began)

    took = statistics.median(p[0] for p in passes)
    engine = statistics.median(p[1] for p in passes)
    base = statistics.median(bare)
    print(f"full pass over {args.replicas} running replicas: median {took * 1000:.1f} ms "
          f"(engine calls {engine * 1000:.1f} ms, database work {(took - engine) * 1000:.1f} "
          f"ms); {passes[0][2]} engine calls, {passes[0][3]} SQL statements of which "
          f"{passes[0][4]} UPDATE")
    print(f"database work per running replica: {(took - engine) / args.replicas * 1e6:.0f} µs")
    print(f"{args.replicas} bare inspects, same API, pool and bound: median "
          f"{base * 1000:.1f} ms")
    print(f"ratio pass / bare inspects: {took / base:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
