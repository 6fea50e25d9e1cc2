"""Samples' retention on a real database: what is older than the miner's days goes, in
batches, and nothing newer; node events are kept 90 days."""

from datetime import timedelta

from portal import samples, settings
from portal.models import ChipSample, Node, NodeChip, NodeEvent, NodeSample, utcnow


def test_prune_removes_old_samples_only_in_batches(app, monkeypatch):
    monkeypatch.setattr(samples, "BATCH", 3)  # several batches out of a few rows
    now = utcnow()
    with app.app_context():
        node = Node.create(name="n1", url="unix:///n1.sock")
        chip = NodeChip.create(node=node, kind="sophgo.com/bm1684x", index=0, device="/dev/x")
        for days in (0, 1.5, 6.9, 7.1, 8, 30, 31, 40):
            at = now - timedelta(days=days)
            NodeSample.create(node=node, at=at, chips_held=0)
            ChipSample.create(chip=chip, at=at, temp_c=40)
        for days in (1, 89, 91):
            NodeEvent.create(node=node, at=now - timedelta(days=days), ready=True)
        assert samples.prune(now) == 2 * 5 + 1
        kept = sorted(round((now - row.at).total_seconds() / 86400, 1)
                      for row in NodeSample.select())
        assert kept == [0, 1.5, 6.9]
        assert ChipSample.select().count() == 3
        assert sorted((now - e.at).days for e in NodeEvent.select()) == [1, 89]
        settings.put("sample_retention_days", "1")
        assert samples.prune(now) == 2 * 2
        assert [row.at for row in NodeSample.select()] == [now]


def test_a_retention_that_is_not_a_whole_number_of_days_reads_as_the_default(app):
    with app.app_context():
        assert samples.retention_days() == 7
        settings.put("sample_retention_days", "seven")
        assert samples.retention_days() == 7
        settings.put("sample_retention_days", "0")
        assert samples.retention_days() == 1
