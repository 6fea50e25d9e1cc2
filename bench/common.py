"""Helpers the benches that drive a live ``flask --app app serve`` share."""

import math
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def flask(env, *argv, stdin=None):
    """Run ``flask --app app ARGV`` with ``env``; its stdout, stripped."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *argv], env=env,
                          cwd=ROOT, input=stdin, capture_output=True, text=True,
                          check=True).stdout.strip()


def wait(predicate, timeout=60, every=0.02):
    """Call ``predicate`` every ``every`` seconds until it returns a true value (returned);
    exit the bench after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit("timed out")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p90(values):
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def p95(values):
    """The nearest-rank 95th percentile: the largest of fewer than 20 values."""
    return sorted(values)[math.ceil(len(values) * 0.95) - 1]


def rss_kib(pid):
    """RSS of ``pid`` and its descendants in KiB, a Podman service left out."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == "podman":
                continue
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        stack.extend(map(int, children))
    return total
