"""How long samples are kept: ``prune`` deletes the node, replica and chip samples older than
the miner's ``sample_retention_days`` and node readiness changes older than ``EVENT_DAYS``.

The scheduler leader's hourly housekeeping calls it. Rows go by ``at`` (each table has an
index on it), oldest first, ``BATCH`` to a transaction, so a large backlog never holds the
database's write lock for long.
"""

from datetime import timedelta

from portal import settings
from portal.db import database
from portal.models import ChipSample, NodeEvent, NodeSample, ReplicaSample, utcnow

BATCH = 5000
EVENT_DAYS = 90
SAMPLES = (NodeSample, ReplicaSample, ChipSample)


def retention_days():
    """The miner's ``sample_retention_days``: a whole number of days, at least 1 (a value
    that is not one reads as the default)."""
    try:
        return max(1, int(settings.get("sample_retention_days")))
    except ValueError:
        return int(settings.DEFAULTS["sample_retention_days"])


def prune(now=None):
    """Delete what is past its keeping; the number of rows deleted. Needs an open connection."""
    now = now or utcnow()
    samples_before = now - timedelta(days=retention_days())
    deleted = sum(_delete_before(model, samples_before) for model in SAMPLES)
    return deleted + _delete_before(NodeEvent, now - timedelta(days=EVENT_DAYS))


def _delete_before(model, moment):
    deleted = 0
    while True:
        with database.atomic():
            oldest = model.select(model.id).where(model.at < moment).order_by(model.at)
            count = model.delete().where(model.id.in_(oldest.limit(BATCH))).execute()
        deleted += count
        if count < BATCH:
            return deleted
