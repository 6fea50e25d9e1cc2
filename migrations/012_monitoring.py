"""Monitoring: readings of nodes, replicas and chips taken by the leader's sampling job (the
built-in charts when there is no Prometheus), node readiness changes (the miner's alerts),
earnings per day and per month, node and spec kept beside the ledger (filled here from the charges so
far), and an index that sums one kind of ledger row (recharges) without reading the rows."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class NodeEvent(pw.Model):
        id = pw.AutoField()
        node = pw.ForeignKeyField(column_name='node_id', field='id', model=migrator.orm['nodes'], on_delete='CASCADE')
        at = pw.DateTimeField()
        ready = pw.BooleanField()
        reason = pw.CharField(default='', max_length=512)

        class Meta:
            table_name = "node_events"
            indexes = [(('at',), False)]

    @migrator.create_model
    class NodeSample(pw.Model):
        id = pw.AutoField()
        node = pw.ForeignKeyField(column_name='node_id', field='id', model=migrator.orm['nodes'], on_delete='CASCADE')
        at = pw.DateTimeField()
        cpu_ratio = pw.FloatField(null=True)
        memory_used_bytes = pw.BigIntegerField(null=True)
        memory_total_bytes = pw.BigIntegerField(null=True)
        chips_held = pw.IntegerField(default=0)

        class Meta:
            table_name = "node_samples"
            indexes = [(('node', 'at'), False), (('at',), False)]

    @migrator.create_model
    class ReplicaSample(pw.Model):
        id = pw.AutoField()
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], on_delete='CASCADE')
        at = pw.DateTimeField()
        cpu_cores = pw.FloatField(null=True)
        memory_bytes = pw.BigIntegerField(null=True)

        class Meta:
            table_name = "replica_samples"
            indexes = [(('replica', 'at'), False), (('at',), False)]

    @migrator.create_model
    class ChipSample(pw.Model):
        id = pw.AutoField()
        chip = pw.ForeignKeyField(column_name='chip_id', field='id', model=migrator.orm['node_chips'], on_delete='CASCADE')
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], null=True, on_delete='SET NULL')
        at = pw.DateTimeField()
        util_ratio = pw.FloatField(null=True)
        memory_used_bytes = pw.BigIntegerField(null=True)
        memory_total_bytes = pw.BigIntegerField(null=True)
        temp_c = pw.FloatField(null=True)
        power_w = pw.FloatField(null=True)

        class Meta:
            table_name = "chip_samples"
            indexes = [(('chip', 'at'), False), (('replica', 'at'), False), (('at',), False)]

    @migrator.create_model
    class EarningDay(pw.Model):
        id = pw.AutoField()
        day = pw.DateField()
        node = pw.IntegerField(default=0)
        spec = pw.IntegerField(default=0)
        charged = pw.BigIntegerField(default=0)

        class Meta:
            table_name = "earning_days"
            indexes = [(('day', 'node', 'spec'), True)]

    @migrator.create_model
    class EarningMonth(pw.Model):
        id = pw.AutoField()
        month = pw.DateField()
        node = pw.IntegerField(default=0)
        spec = pw.IntegerField(default=0)
        charged = pw.BigIntegerField(default=0)

        class Meta:
            table_name = "earning_months"
            indexes = [(('month', 'node', 'spec'), True)]

    migrator.add_index("ledger", "kind", "amount")
    migrator.add_index("replica_events", "state", "at")

    def total_existing_earnings():
        ledger, days = migrator.orm["ledger"], migrator.orm["earning_days"]
        totals = {}
        for at, node, spec, amount in (ledger.select(ledger.at, ledger.node, ledger.spec,
                                                     ledger.amount)
                                       .where(ledger.kind == "charge").tuples()):
            key = (at.date(), node or 0, spec or 0)
            totals[key] = totals.get(key, 0) - amount
        months = migrator.orm["earning_months"]
        by_month = {}
        for (day, node, spec), charged in totals.items():
            days.insert(day=day, node=node, spec=spec, charged=charged).execute()
            key = (day.replace(day=1), node, spec)
            by_month[key] = by_month.get(key, 0) + charged
        for (month, node, spec), charged in by_month.items():
            months.insert(month=month, node=node, spec=spec, charged=charged).execute()

    migrator.run(total_existing_earnings)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.drop_index("replica_events", "state", "at")
    migrator.drop_index("ledger", "kind", "amount")
    for table in ("earning_months", "earning_days", "chip_samples", "replica_samples", "node_samples",
                  "node_events"):
        migrator.remove_model(table)
