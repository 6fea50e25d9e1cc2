"""Start-up and idle memory of ``flask --app app serve`` against a bare gunicorn.

Measures, in one run on this machine:
- Hourglass: time from launching ``serve`` on a fresh instance (migrations,
  first miner, its own Podman service) to the first ``/login`` page, then the
  same on the now-warm instance, and the idle RSS of its processes;
- baseline: a one-line WSGI app under the same gunicorn (gthread) to its
  first response, and its idle RSS.
Prints each figure and the ratios Hourglass / baseline.

    .venv/bin/python bench/startup.py [--runs 3]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import ROOT, free_port, rss_kib  # noqa: E402

BASELINE_APP = "def app(environ, start_response):\n" \
    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n" \
    "    return [b'ok']\n"


def time_to_first_page(argv, env, url, cwd):
    """Launch ``argv``; seconds until ``url`` answers 200, the process, and its RSS when idle."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{argv} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    time.sleep(2)  # idle
    rss = rss_kib(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(30)
    return elapsed, rss


def hourglass(instance):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOURGLASS_")}
    env.update(HOURGLASS_INSTANCE=str(instance), PORT=str(port), HOST="127.0.0.1")
    return time_to_first_page([sys.executable, "-m", "flask", "--app", "app", "serve"], env,
                              f"http://127.0.0.1:{port}/login", ROOT)


def baseline(folder):
    port = free_port()
    (folder / "hello.py").write_text(BASELINE_APP)
    argv = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "32",
            "--no-control-socket", "-b", f"127.0.0.1:{port}", "hello:app"]
    return time_to_first_page(argv, dict(os.environ), f"http://127.0.0.1:{port}/", folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    cold, warm, base, rss_hg, rss_base = [], [], [], [], []
    for _ in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="hg-bench-"))
        try:
            t, _rss = hourglass(folder)
            cold.append(t)
            t, rss = hourglass(folder)
            warm.append(t)
            rss_hg.append(rss)
            t, rss = baseline(folder)
            base.append(t)
            rss_base.append(rss)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    med = statistics.median
    print(f"runs: {runs}")
    print(f"hourglass cold start to first page: {med(cold):.2f} s")
    print(f"hourglass warm start to first page: {med(warm):.2f} s")
    print(f"baseline gunicorn hello-world:      {med(base):.2f} s")
    print(f"ratio cold/baseline: {med(cold) / med(base):.2f}  warm/baseline: "
          f"{med(warm) / med(base):.2f}")
    print(f"idle RSS hourglass: {med(rss_hg) / 1024:.0f} MiB  baseline: "
          f"{med(rss_base) / 1024:.0f} MiB  ratio: {med(rss_hg) / med(rss_base):.2f}")


if __name__ == "__main__":
    main()
