"""The scheduler service: an APScheduler BackgroundScheduler in this process.

Two jobs: ``heartbeat`` takes or renews the leader lease, ``tick`` does the
leader's periodic work (nothing yet but recording that it ran). ``state`` is
``leader``, ``follower`` or ``stopped``; ``/healthz`` reports it.
"""

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from portal.db import database
from scheduler.lease import Lease, new_holder_id

log = logging.getLogger(__name__)


class SchedulerService:
    def __init__(self, enabled, tick_seconds, lease_seconds):
        self.enabled = enabled
        self.tick_seconds = tick_seconds
        self.lease_seconds = lease_seconds
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
        self._scheduler.start()
        log.info("scheduler started as %s (%s)", self.state, self.lease.holder)

    def shutdown(self):
        """Stop the jobs and hand the lease over at once; safe to call twice."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
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
        self.is_leader = leader

    def tick(self):
        """The leader's periodic work. Only the leader acts."""
        if not self.is_leader:
            return
        with database.connection_context():
            self.is_leader = self.lease.record_tick()
