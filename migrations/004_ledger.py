"""Money: users' cached balances, the append-only ledger, replicas' price snapshot and
what their charges cover, and a task's stop reason when Hourglass stopped it."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields("users", balance=pw.BigIntegerField(default=0))
    migrator.add_fields("tasks", stop_reason=pw.CharField(default="", max_length=128))
    migrator.add_fields(
        "replicas",
        price_per_hour=pw.BigIntegerField(null=True),
        billed_seconds=pw.BigIntegerField(default=0),
        charged=pw.BigIntegerField(default=0),
        settled=pw.BooleanField(default=False),
    )

    @migrator.create_model
    class LedgerEntry(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='RESTRICT')
        kind = pw.CharField(max_length=16)
        amount = pw.BigIntegerField()
        balance_after = pw.BigIntegerField()
        at = pw.DateTimeField()
        actor = pw.ForeignKeyField(column_name='actor_id', field='id', model=migrator.orm['users'], null=True, on_delete='RESTRICT')
        note = pw.CharField(default='', max_length=512)
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], null=True, on_delete='RESTRICT')
        task = pw.ForeignKeyField(column_name='task_id', field='id', model=migrator.orm['tasks'], null=True, on_delete='RESTRICT')
        spec = pw.ForeignKeyField(column_name='spec_id', field='id', model=migrator.orm['resource_specs'], null=True, on_delete='RESTRICT')
        node = pw.ForeignKeyField(column_name='node_id', field='id', model=migrator.orm['nodes'], null=True, on_delete='SET NULL')
        price_per_hour = pw.BigIntegerField(null=True)
        seconds_from = pw.BigIntegerField(null=True)
        seconds_to = pw.BigIntegerField(null=True)

        class Meta:
            table_name = "ledger"
            indexes = [(('replica', 'seconds_to'), True), (('user', 'at'), False),
                       (('kind', 'at'), False)]

    # The metering tick looks for replicas with charges still to make.
    migrator.add_index("replicas", "state", "settled")
    def settle_earlier_work():
        # The ledger starts here: work placed before it has no price snapshot, is not billed.
        migrator.orm["replicas"].update(settled=True).execute()

    migrator.run(settle_earlier_work)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.drop_index("replicas", "state", "settled")
    migrator.remove_model('ledger')
    migrator.remove_fields("replicas", "price_per_hour", "billed_seconds", "charged", "settled")
    migrator.remove_fields("tasks", "stop_reason")
    migrator.remove_fields("users", "balance")
