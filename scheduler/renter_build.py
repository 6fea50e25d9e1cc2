"""A renter's image built from a Containerfile with the ``podman`` command (argv, never a
shell), not the API: podman-py's build returns its log only once the build has ended, and
the page shows each line as it comes. No network (``--network=none``), nothing pulled,
no build arguments, an empty context; each RUN step limited to BUILD_MEMORY (no swap) and
BUILD_CPUS; stopped after its time. Podman 4.3's build has no process-count limit (no
``--pids-limit``; ``--ulimit nproc`` counts every process of the user on the host), so
the engine's default ``nproc`` ulimit is the only one.
"""

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from scheduler.backend import BackendError
from scheduler.libpod import CPU_PERIOD_US

STOP_GRACE = 10  # seconds a stopped build has to clean up after its killed step
BUILD_MEMORY = 4 << 30  # bytes a RUN step may use
BUILD_CPUS = 2


def build(reference, containerfile, env, say, seconds):
    """Build ``reference`` from ``containerfile`` (text) with the podman environment
    ``env``, each output line to ``say(line)``; raises BackendError when it fails or runs
    past ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="hg-build-") as context:
        path = Path(context) / "Containerfile"
        path.write_text(containerfile)
        argv = ["podman", "build", "--network=none", "--pull=never", "--no-cache",
                f"--memory={BUILD_MEMORY}", f"--memory-swap={BUILD_MEMORY}",
                f"--cpu-period={CPU_PERIOD_US}", f"--cpu-quota={BUILD_CPUS * CPU_PERIOD_US}",
                "-f", str(path), "-t", reference, context]
        # A session of its own, so that a build past its time is found and stopped.
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   text=True, errors="replace", start_new_session=True)
        late = threading.Event()
        timer = threading.Timer(seconds, lambda: (late.set(), stop(process)))
        timer.start()
        try:
            for line in process.stdout:
                say(line)
            code = process.wait()
        finally:
            timer.cancel()
            if process.poll() is None:
                stop(process)
    if late.is_set():
        raise BackendError(f"the build took longer than {seconds} s")
    if code != 0:
        raise BackendError(f"the build failed (podman build exited with {code})")


def _outside_children(session):
    """Processes whose parent is in the process group ``session`` but which are not: a
    build's RUN step runs in a session of its own under the build's runtime helper."""
    group, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1:3]
            except (OSError, ValueError):
                continue  # ended meanwhile
            parents[int(entry.name)] = (int(ppid), int(pgrp))
            if int(pgrp) == session:
                group.add(int(entry.name))
    return [pid for pid, (ppid, pgrp) in parents.items() if ppid in group and pgrp != session]


def stop(process, grace=STOP_GRACE):
    """Stop the ``podman build`` ``process`` (started in a session of its own): its RUN
    step's container is killed (its first process; the rest of its PID namespace goes
    with it), so the build fails and cleans up as after any failed step; the build itself
    is killed if it still runs ``grace`` seconds later."""
    for pid in _outside_children(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
