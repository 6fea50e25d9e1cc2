"""Timing notebook runs from submission to a JupyterLab that answers
(``hourglass_notebook_start_seconds``).

The leader's pass notes, before its other steps, the notebook runs that wait (a replica
pending or starting); after them, each noted run whose live replicas all run with an
address gets a waiter thread that asks their JupyterLabs (``portal.proxy.ready.answers``)
every ``POLL_SECONDS`` and observes the time since the run's submission once all answer.
Only a pass that saw a run wait starts its waiter, so each run is timed once, by the
leader that started it, and a restarted or new leader times no run that was ready before.
A run whose JupyterLab does not answer within ``GIVE_UP_SECONDS`` is not timed.
"""

import threading
import time

from portal.models import REPLICA_ENDED, Replica, Task, utcnow
from portal.proxy import access, ready

POLL_SECONDS = 0.1
GIVE_UP_SECONDS = 300


class NotebookStarts:
    """The two steps of the pass (``note_waiting``, ``await_jupyter``); ``histogram`` gets
    each run's time (None: the steps do nothing)."""

    def __init__(self, histogram):
        self.histogram = histogram
        self._waiting = set()  # ids of the notebook runs waiting when this pass began

    def note_waiting(self):
        """The first step: note the notebook runs that wait now."""
        if self.histogram is None:
            return
        self._waiting = {task for (task,) in Replica.select(Replica.task).join(Task)
                         .where((Task.kind == "notebook")
                                & Replica.state.in_(("pending", "starting"))).tuples()}

    def await_jupyter(self):
        """After the replicas were started and followed: a waiter for each noted run whose
        live replicas all run with an address now."""
        noted, self._waiting = self._waiting, set()
        if not noted:
            return
        runs = {}
        for replica in (Replica.select(Replica.id, Replica.task, Replica.state,
                                       Replica.address)
                        .where(Replica.task.in_(list(noted))
                               & Replica.state.not_in(REPLICA_ENDED))):
            runs.setdefault(replica.task_id, []).append(replica)
        ran = [task for task, replicas in runs.items()
               if all(r.state == "running" and r.address for r in replicas)]
        if not ran:
            return
        for task in Task.select(Task.id, Task.secret, Task.submitted_at).where(
                Task.id.in_(ran)):
            targets = [access.Target(replica_id=r.id, address=r.address, secret=task.secret)
                       for r in runs[task.id]]
            threading.Thread(target=self._wait, args=(task.submitted_at, targets),
                             name=f"notebook-start-{task.id}", daemon=True).start()

    def _wait(self, submitted_at, targets):
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < deadline:
            if all(ready.answers(target) for target in targets):
                self.histogram.observe(max(0.0, (utcnow() - submitted_at).total_seconds()))
                return
            time.sleep(POLL_SECONDS)
