"""Stopping a child process: SIGTERM first, SIGKILL for one that ignores it."""

import signal
import subprocess
import sys

from portal import processes

IGNORES_SIGTERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(60)")


def python(code):
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_sigterm_stops_a_process_that_heeds_it():
    with python("import time; print('ready', flush=True); time.sleep(60)") as process:
        assert process.stdout.readline() == "ready\n"
        processes.stop(process, 10)
        assert process.returncode == -signal.SIGTERM
        processes.stop(process, 10)  # stopped already: nothing to do


def test_sigkill_stops_one_that_ignores_sigterm():
    with python(IGNORES_SIGTERM) as process:
        assert process.stdout.readline() == "ready\n"  # its handler is in place
        processes.stop(process, 0.5)
        assert process.returncode == -signal.SIGKILL
