"""Timing notebook runs from submission to a JupyterLab that answers
(``hourglass_notebook_start_seconds``).

The leader's pass notes, before its other steps, the notebook runs that wait (a replica
pending or starting): they join the runs still to time. After its other steps it reads
those runs again: one that ended, or that was last noted waiting more than
``GIVE_UP_SECONDS`` ago, is dropped untimed; one whose live replicas all run with an
address is to be polled. While some are, one waiter thread asks their JupyterLabs
(``portal.proxy.ready.answers``), one run after another, every ``POLL_SECONDS``, observes
a run's time since submission once all of its replicas answer, and reads the runs again
every ``REREAD_SECONDS`` itself; it ends when none is left to poll. Only runs seen waiting
are timed, so a restarted or new leader times no run that was ready before, and each run
once (its replicas never wait again once all ran). ``stop`` ends the waiter and forgets the
runs: the service calls it when it stops leading and when it shuts down.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from portal.db import database
from portal.models import REPLICA_ENDED, Replica, Task, utcnow
from portal.proxy import access, ready

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
REREAD_SECONDS = 2.0
GIVE_UP_SECONDS = 300
JOIN_SECONDS = 5.0  # how long ``stop`` waits for the waiter (one answer takes at most 1 s)


@dataclass
class _Run:
    noted: float  # time.monotonic() when last seen waiting
    submitted_at: datetime | None = None
    targets: tuple = ()  # its replicas' JupyterLabs, once all run with an address


class NotebookStarts:
    """The two steps of the pass (``note_waiting``, ``await_jupyter``) and ``stop``;
    ``histogram`` gets each run's time (None: the steps do nothing)."""

    def __init__(self, histogram):
        self.histogram = histogram
        self._lock = threading.Lock()
        self._runs = {}  # run id: _Run, the runs still to time
        self._waiter = None  # (thread, its stop event) while one runs

    def note_waiting(self):
        """The first step: add the notebook runs that wait now to the runs to time."""
        if self.histogram is None:
            return
        waiting = [task for (task,) in Replica.select(Replica.task).join(Task)
                   .where((Task.kind == "notebook")
                          & Replica.state.in_(("pending", "starting"))).distinct().tuples()]
        now = time.monotonic()
        with self._lock:
            for task in waiting:
                self._runs.setdefault(task, _Run(now)).noted = now

    def await_jupyter(self):
        """After the replicas were started and followed: read the runs to time again and
        start the waiter if some are to be polled and it does not run."""
        if self.histogram is None:
            return
        self._reread()
        with self._lock:
            if self._waiter is None and any(run.targets for run in self._runs.values()):
                stopped = threading.Event()
                thread = threading.Thread(target=self._wait, args=(stopped,),
                                          name="notebook-starts", daemon=True)
                self._waiter = (thread, stopped)
                thread.start()

    def stop(self):
        """End the waiter (waiting for it a little) and forget the runs to time."""
        with self._lock:
            waiter, self._waiter = self._waiter, None
            self._runs.clear()
            if waiter is not None:
                waiter[1].set()
        if waiter is not None:
            waiter[0].join(JOIN_SECONDS)

    def _reread(self):
        """Drop the runs that ended or waited too long ago; set the others' targets."""
        with self._lock:
            noted = list(self._runs)
        if not noted:
            return
        live = {}
        for replica in (Replica.select(Replica.id, Replica.task, Replica.state,
                                       Replica.address)
                        .where(Replica.task.in_(noted) & Replica.state.not_in(REPLICA_ENDED))):
            live.setdefault(replica.task_id, []).append(replica)
        ran = [task for task, replicas in live.items()
               if all(r.state == "running" and r.address for r in replicas)]
        tasks = {task.id: task for task in Task.select(Task.id, Task.secret, Task.submitted_at)
                 .where(Task.id.in_(ran))} if ran else {}
        now = time.monotonic()
        with self._lock:
            for task_id in noted:
                run = self._runs.get(task_id)
                if run is None:  # timed, or stopped, meanwhile
                    continue
                if task_id not in live or now - run.noted > GIVE_UP_SECONDS:
                    del self._runs[task_id]
                elif task_id in tasks:
                    task = tasks[task_id]
                    run.submitted_at = task.submitted_at
                    run.targets = tuple(
                        access.Target(replica_id=r.id, address=r.address, secret=task.secret)
                        for r in live[task_id])
                else:
                    run.targets = ()

    def _wait(self, stopped):
        """The waiter: polls the runs to time until none is left to poll or ``stopped``."""
        read_at = time.monotonic()  # the pass that started it has just read them
        while not stopped.is_set():
            if time.monotonic() - read_at >= REREAD_SECONDS:
                try:
                    with database.connection_context():
                        self._reread()
                except Exception:
                    log.exception("reading the notebook runs to time failed")
                read_at = time.monotonic()
            with self._lock:
                if stopped.is_set():
                    return
                polled = [(task, run) for task, run in self._runs.items() if run.targets]
                if not polled:
                    self._waiter = None
                    return
            for task, run in polled:
                if all(not stopped.is_set() and ready.answers(target)
                       for target in run.targets):
                    self._observe(task, run, stopped)
            stopped.wait(POLL_SECONDS)

    def _observe(self, task, run, stopped):
        with self._lock:
            if stopped.is_set() or self._runs.get(task) is not run:
                return
            del self._runs[task]
        self.histogram.observe(max(0.0, (utcnow() - run.submitted_at).total_seconds()))
