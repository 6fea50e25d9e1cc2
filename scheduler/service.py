"""The scheduler service: an APScheduler BackgroundScheduler in this process.

Five jobs: ``heartbeat`` takes or renews the leader lease, ``tick`` does the
leader's work on replicas (``scheduler.reconcile``) and records that it ran,
``discovery`` looks at every node (``scheduler.discovery``) every
``discovery_seconds``, and once as soon as this process becomes leader, and
``housekeeping`` (the leader's slow chores, e.g. stale uploads) every hour, and once as
soon as this process becomes leader; ``sampling`` (``scheduler.sampling``: readings of
the nodes, replicas and chips for the charts) every ``sample_seconds``. While
leader, an ``EventWatcher`` (``scheduler.watch``) follows the enabled nodes'
container events and wakes the tick when one of our containers ends.

``state`` is ``leader``, ``follower`` or ``stopped``; ``/healthz`` reports it.
The portal asks for a discovery now with ``request_discovery()`` and for a
tick now with ``wake()`` (a submission or a stop), through signals wired in
``app.py``.
"""

import logging
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from portal.db import database
from portal.models import Node
from scheduler.lease import Lease, new_holder_id

log = logging.getLogger(__name__)
# Passes that follow each other because of wakes (a burst of submissions) start at least
# this far apart: the first wake runs at once, the others share the next pass, and the
# portal's request threads keep the CPU between passes.
WAKE_GAP_SECONDS = 0.2
HOUSEKEEPING_SECONDS = 3600


class SchedulerService:
    """``discovery`` is a ``scheduler.discovery.Discovery``, or None for no discovery job;
    ``watcher`` a ``scheduler.watch.EventWatcher`` (it needs the ``reconciler``), or None;
    ``housekeeping`` a callable the leader runs every ``HOUSEKEEPING_SECONDS``, or None;
    ``timings`` a ``portal.metrics.Timings`` that gets each pass's duration, or None;
    ``sampler`` a ``scheduler.sampling.Sampler`` the leader runs every ``sample_seconds``,
    or None."""

    def __init__(self, enabled, tick_seconds, lease_seconds, discovery=None,
                 discovery_seconds=30.0, reconciler=None, watcher=None, housekeeping=None,
                 timings=None, sampler=None, sample_seconds=15.0):
        self.enabled = enabled
        self.tick_seconds = tick_seconds
        self.lease_seconds = lease_seconds
        self.discovery = discovery
        self.discovery_seconds = discovery_seconds
        self.reconciler = reconciler
        self.watcher = watcher
        self.housekeeping = housekeeping
        self.timings = timings
        self.sampler = sampler
        self.sample_seconds = sample_seconds
        self._woken = threading.Event()
        # Whether ``tick`` is in its loop of passes, which runs once more when woken; both
        # change under the lock, so a wake is never left to a loop that has decided to end.
        self._in_passes = False
        self._wake_lock = threading.Lock()
        self.lease = Lease(new_holder_id(), lease_seconds)
        self.is_leader = False
        self._scheduler = None

    @property
    def state(self):
        if self._scheduler is None or not self._scheduler.running:
            return "stopped"
        return "leader" if self.is_leader else "follower"

    def start(self):
        """Start the jobs; the first heartbeat runs before this returns."""
        self.heartbeat()
        self._scheduler = BackgroundScheduler(daemon=True, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        # Renew well inside the lease so a slow database does not cost the lease.
        self._scheduler.add_job(self.heartbeat, "interval", seconds=self.lease_seconds / 3,
                                id="heartbeat")
        self._scheduler.add_job(self.tick, "interval", seconds=self.tick_seconds, id="tick")
        if self.discovery is not None:
            # Two instances at most: a request during a run waits for it, then runs once
            # more (Discovery.run is one at a time), so requests coalesce and none is lost.
            self._scheduler.add_job(self.discovery_job, "interval", id="discovery",
                                    seconds=self.discovery_seconds, max_instances=2)
        if self.housekeeping is not None:
            self._scheduler.add_job(self.housekeeping_job, "interval", id="housekeeping",
                                    seconds=HOUSEKEEPING_SECONDS)
        if self.sampler is not None:
            self._scheduler.add_job(self.sampling_job, "interval", id="sampling",
                                    seconds=self.sample_seconds)
        self._scheduler.start()
        log.info("scheduler started as %s (%s)", self.state, self.lease.holder)
        self.request_discovery()
        self.request_housekeeping()

    def shutdown(self):
        """Stop the jobs and hand the lease over at once; safe to call twice."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self._stop_leading()
        if self.sampler is not None:
            self.sampler.close()
        if self.is_leader:
            with database.connection_context():
                self.lease.release()
            self.is_leader = False

    def heartbeat(self):
        try:
            with database.connection_context():
                leader = self.lease.try_acquire()
        except Exception:
            log.exception("leader lease check failed; acting as follower")
            leader = False
        if leader != self.is_leader:
            log.info("scheduler is now %s", "leader" if leader else "follower")
        became_leader = leader and not self.is_leader
        self.is_leader = leader
        if became_leader:
            self.request_discovery()
            self.request_housekeeping()
        elif not leader:
            self._stop_leading()

    def _stop_leading(self):
        """Stop what runs only while leading: the event watcher and the waiter that times
        notebooks' starts."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.reconciler is not None:
            self.reconciler.notebook_starts.stop()

    def tick(self):
        """The leader's periodic work. Only the leader acts."""
        if not self.is_leader:
            return
        with database.connection_context():
            self.is_leader = self.lease.record_tick()
            if self.is_leader and self.watcher is not None:
                urls = [url for (url,) in Node.select(Node.url).where(Node.enabled).tuples()]
                self.watcher.sync(urls, self.reconciler.instance)
            # A wake during a pass would be skipped by APScheduler (one tick at a time):
            # the flag makes the pass run once more instead.
            with self._wake_lock:
                self._woken.clear()
                self._in_passes = True
            try:
                while self.is_leader and self.reconciler is not None:
                    began = time.monotonic()
                    self._pass()
                    with self._wake_lock:
                        if not (self._woken.is_set() or self.reconciler.more_to_start):
                            self._in_passes = False  # a wake from now on asks APScheduler
                            break
                    time.sleep(max(0.0, began + WAKE_GAP_SECONDS - time.monotonic()))
                    with self._wake_lock:
                        self._woken.clear()
            finally:
                with self._wake_lock:
                    self._in_passes = False
                if not self.is_leader:  # lost during the pass, which may have started them
                    self._stop_leading()

    def _pass(self):
        """One reconciler pass, timed: its duration at debug level and in ``timings``, a
        warning when it took longer than the tick (work queues up behind it)."""
        began = time.monotonic()
        self.reconciler.run()
        failed = self.reconciler.failed_steps
        took = time.monotonic() - began
        log.debug("scheduler pass took %.3f s", took)
        if self.timings is not None:
            self.timings.scheduler_pass.observe(took)
        if took > self.tick_seconds:
            log.warning("a scheduler pass took %.1f s, longer than the %g s tick%s", took,
                        self.tick_seconds, f" (failed steps: {', '.join(failed)})"
                        if failed else "")

    def wake(self):
        """Run the tick as soon as possible (a task was submitted or stopped); returns at once.
        False when this process is not the running leader."""
        if self.state != "leader":
            return False
        with self._wake_lock:
            self._woken.set()
            if self._in_passes:  # the loop runs once more: no need to ask APScheduler
                return True
        self._scheduler.modify_job("tick", next_run_time=datetime.now(UTC))
        return True

    def discovery_job(self):
        """The leader's node discovery; a follower does nothing."""
        if self.is_leader:
            self.discovery.run()

    def housekeeping_job(self):
        """The leader's slow chores; a follower does nothing. A failure is logged and the
        next hour tries again."""
        if not self.is_leader:
            return
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping failed")

    def sampling_job(self):
        """The leader's samples of nodes, replicas and chips; a follower does nothing. A
        failure is logged and the next period tries again."""
        if not self.is_leader:
            return
        try:
            self.sampler.run()
        except Exception:
            log.exception("sampling failed")

    def discover_now(self):
        """Run one discovery here and now, leader or not; {node id: Finding}. For tests and
        the bench: the scheduler itself runs it as ``discovery_job``."""
        return self.discovery.run()

    def request_discovery(self):
        """Ask for a discovery as soon as possible (e.g. after a node was added); returns at once.

        False when this process is not the running leader (nothing is done:
        the leader's next period picks the change up) or has no discovery.
        """
        if self.discovery is None or self.state != "leader":
            return False
        self._scheduler.modify_job("discovery", next_run_time=datetime.now(UTC))
        return True

    def request_housekeeping(self):
        """Run the leader's chores as soon as possible: on becoming leader, so that they (the
        lab's Grafana among them) need not wait an hour. False when this process is not the
        running leader or has no chores."""
        if self.housekeeping is None or self.state != "leader":
            return False
        self._scheduler.modify_job("housekeeping", next_run_time=datetime.now(UTC))
        return True
