"""Time to discover one node, against asking Podman for ``info`` and nothing else.

Measures, in one run on this machine, with two Podman API services of its own:
- the local node on a fake host tree of 2 SC7 cards (6 BM1684X chips):
  Podman's info, the chips read directly, the node and chips stored;
- a probe-based node: Podman's info, a probe container on that node reading
  the same fake tree, its output mirrored and read, the node and chips stored;
- baselines: ``podman --url URL info`` (the CLI), and one bare podman-py
  ``info()`` call (a new client each time, as discovery makes one per node).
Prints the median of each and the ratios node / baseline. Needs root (mknod).

    .venv/bin/python bench/discovery.py [--runs 10] [--probe-image IMAGE]
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from podman import PodmanClient  # noqa: E402

from portal import db  # noqa: E402
from portal.models import Node  # noqa: E402
from scheduler.discovery import Discovery, record  # noqa: E402
from scheduler.podman_service import LocalPodmanService  # noqa: E402
from tests.fake_hosts import make_sophgo_host  # noqa: E402

BUSYBOX_IMAGE = "localhost/hourglass-test-busybox:latest"  # the tests' image, shared


def ensure_busybox_image(image, folder):
    """A busybox image with sh, cat and ls, built with ``podman import`` unless present."""
    if subprocess.run(["podman", "image", "exists", image]).returncode == 0:
        return
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin/busybox")
    for applet in ("sh", "cat", "ls"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(folder / "rootfs.tar"), "."],
                   check=True)
    subprocess.run(["podman", "import", "--change", 'CMD ["/bin/sh"]',
                    str(folder / "rootfs.tar"), image], check=True, capture_output=True)


def timed(fn, runs):
    """Median seconds of ``runs`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--probe-image", default=BUSYBOX_IMAGE)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    services = []
    try:
        ensure_busybox_image(args.probe_image, folder)
        make_sophgo_host(folder / "host", cards=[("0x1686", 3)] * 2)
        local_service = LocalPodmanService(folder, "local").start()
        services.append(local_service)
        remote_service = LocalPodmanService(folder, "remote").start()
        services.append(remote_service)
        db.database.initialize(db.open_database(f"sqlite:///{folder / 'bench.db'}"))
        db.upgrade()
        local = Node.create(name="local", url=local_service.url, source="local")
        remote = Node.create(name="remote", url=remote_service.url, source="manual")
        discovery = Discovery(local_service.url, host_root=folder / "host",
                              probe_image=args.probe_image, probe_root=folder / "host")

        def discover(node):
            finding = discovery.inspect(node)
            assert finding.ready and len(finding.chips) == 6, finding
            record(node, finding)

        def bare_info():
            with PodmanClient(base_url=local_service.url, timeout=5) as client:
                client.info()

        cli = ["podman", "--url", local_service.url, "info"]
        results = {
            "local node (6 chips read directly)": timed(lambda: discover(local), args.runs),
            "probe-based node (6 chips by probe)": timed(lambda: discover(remote), args.runs),
            "baseline podman --url URL info (CLI)": timed(
                lambda: subprocess.run(cli, check=True, capture_output=True), args.runs),
            "baseline podman-py info()": timed(bare_info, args.runs),
        }
    finally:
        for service in services:
            service.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"runs: {args.runs} (median)")
    for name, seconds in results.items():
        print(f"{name:40s} {seconds * 1000:8.1f} ms")
    *nodes, cli_info, py_info = results.values()
    for name, seconds in zip(["local node", "probe-based node"], nodes, strict=True):
        print(f"ratio {name:16s} / CLI info: {seconds / cli_info:5.2f}"
              f"   / podman-py info: {seconds / py_info:5.2f}")


if __name__ == "__main__":
    main()
