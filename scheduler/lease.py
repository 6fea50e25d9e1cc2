"""The leader lease: a row in the database that one process holds at a time.

Every process with the scheduler on calls ``try_acquire`` every few seconds.
The holder renews its lease; when it dies, the lease expires and the next
caller takes it. One UPDATE decides, so two processes can never both win.
Times are each process's clock, so all processes sharing a database must
keep their clocks in step (NTP), as usual for leases.
"""

import os
import socket
import uuid
from datetime import timedelta

from portal.db import database
from portal.models import LeaderLease, utcnow

LEASE_NAME = "scheduler"


def new_holder_id():
    """A name for this process that is unique and says where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, holder, ttl_seconds):
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_seconds)

    def try_acquire(self):
        """Take or renew the lease; True when this process holds it afterwards."""
        now = utcnow()
        with database.atomic():
            LeaderLease.insert(
                name=LEASE_NAME, holder=self.holder, expires_at=now + self.ttl
            ).on_conflict_ignore().execute()
            won = (
                LeaderLease.update(holder=self.holder, expires_at=now + self.ttl)
                .where(
                    (LeaderLease.name == LEASE_NAME)
                    & ((LeaderLease.holder == self.holder) | (LeaderLease.expires_at < now))
                )
                .execute()
            )
        return won == 1

    def release(self):
        """Give the lease up now (clean shutdown) so a follower need not wait for expiry."""
        LeaderLease.update(expires_at=utcnow()).where(
            (LeaderLease.name == LEASE_NAME) & (LeaderLease.holder == self.holder)
        ).execute()

    def record_tick(self):
        """Note that the leader's tick ran; returns False if the lease was lost meanwhile."""
        return (
            LeaderLease.update(last_tick_at=utcnow())
            .where((LeaderLease.name == LEASE_NAME) & (LeaderLease.holder == self.holder))
            .execute()
            == 1
        )
