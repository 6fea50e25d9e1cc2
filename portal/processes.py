"""Child processes: stopping one in order, and tying one's life to its parent's."""

import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent thread ends


def stop(process, seconds):
    """Stop the Popen ``process`` if it still runs: SIGTERM, then SIGKILL after ``seconds``;
    waits for its exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def dying_with_parent():
    """A ``preexec_fn`` for Popen: the child gets SIGTERM when the thread that started it
    ends, however that ends (SIGKILL included), so start it from a thread that lives as long
    as the process (the main one)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent ended before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
