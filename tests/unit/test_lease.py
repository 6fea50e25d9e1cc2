"""The leader lease on a real SQLite database: one holder at a time, expiry, release."""

import threading
from datetime import timedelta

from portal.db import database
from portal.models import LeaderLease, utcnow
from scheduler.lease import Lease


def test_one_holder_at_a_time(app):
    with app.app_context():
        a, b = Lease("a", 30), Lease("b", 30)
        assert a.try_acquire() is True
        assert b.try_acquire() is False
        assert a.try_acquire() is True  # renewal
        assert LeaderLease.get().holder == "a"


def test_an_expired_lease_goes_to_the_next_caller(app):
    with app.app_context():
        a, b = Lease("a", 30), Lease("b", 30)
        a.try_acquire()
        LeaderLease.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
        assert b.try_acquire() is True
        assert a.try_acquire() is False
        assert a.record_tick() is False  # a lost leader cannot record work
        assert b.record_tick() is True


def test_release_hands_over_at_once(app):
    with app.app_context():
        a, b = Lease("a", 30), Lease("b", 30)
        a.try_acquire()
        a.release()
        assert b.try_acquire() is True


def test_concurrent_callers_elect_exactly_one(app):
    with app.app_context():
        Lease("old", 30).try_acquire()
        LeaderLease.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    barrier = threading.Barrier(8)
    results = []

    def contend(i):
        with app.app_context(), database.connection_context():
            barrier.wait()
            results.append(Lease(f"p{i}", 30).try_acquire())

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
