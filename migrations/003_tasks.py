"""Tasks, subtasks, replicas with their events and chips, and per-user pool limits."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields("nodes", images=pw.TextField(default="[]"))

    @migrator.create_model
    class PoolLimit(pw.Model):
        id = pw.AutoField()
        pool = pw.ForeignKeyField(column_name='pool_id', field='id', model=migrator.orm['pools'], on_delete='CASCADE', unique=True)
        max_chips_per_user = pw.IntegerField(null=True)
        max_replicas_per_user = pw.IntegerField(null=True)

        class Meta:
            table_name = "pool_limits"

    @migrator.create_model
    class Task(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='RESTRICT')
        kind = pw.CharField(default='training', max_length=16)
        name = pw.CharField(max_length=96)
        image = pw.CharField(max_length=255)
        argv = pw.TextField(default='[]')
        env = pw.TextField(default='{}')
        pool = pw.ForeignKeyField(column_name='pool_id', field='id', model=migrator.orm['pools'], on_delete='RESTRICT')
        state = pw.CharField(default='pending', max_length=16)
        reason = pw.CharField(default='', max_length=512)
        submitted_at = pw.DateTimeField()
        stop_requested = pw.BooleanField(default=False)
        deleted = pw.BooleanField(default=False)
        rerun_of = pw.ForeignKeyField(column_name='rerun_of_id', field='id', model='self', null=True, on_delete='SET NULL')

        class Meta:
            table_name = "tasks"

    @migrator.create_model
    class Subtask(pw.Model):
        id = pw.AutoField()
        task = pw.ForeignKeyField(column_name='task_id', field='id', model=migrator.orm['tasks'], on_delete='CASCADE')
        role = pw.CharField(max_length=32)
        spec = pw.ForeignKeyField(column_name='spec_id', field='id', model=migrator.orm['resource_specs'], on_delete='RESTRICT')
        replicas = pw.IntegerField()

        class Meta:
            table_name = "subtasks"
            indexes = [(('task', 'role'), True)]

    @migrator.create_model
    class Replica(pw.Model):
        id = pw.AutoField()
        task = pw.ForeignKeyField(column_name='task_id', field='id', model=migrator.orm['tasks'], on_delete='CASCADE')
        subtask = pw.ForeignKeyField(column_name='subtask_id', field='id', model=migrator.orm['subtasks'], on_delete='CASCADE')
        index = pw.IntegerField()
        state = pw.CharField(default='pending', max_length=16)
        reason = pw.CharField(default='', max_length=512)
        node = pw.ForeignKeyField(column_name='node_id', field='id', model=migrator.orm['nodes'], null=True, on_delete='SET NULL')
        container = pw.CharField(default='', max_length=128)
        started_ns = pw.BigIntegerField(null=True)
        finished_ns = pw.BigIntegerField(null=True)
        exit_code = pw.IntegerField(null=True)
        last_seen_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "replicas"
            indexes = [(('subtask', 'index'), True)]

    @migrator.create_model
    class ReplicaChip(pw.Model):
        id = pw.AutoField()
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], on_delete='CASCADE')
        chip = pw.ForeignKeyField(column_name='chip_id', field='id', model=migrator.orm['node_chips'], on_delete='CASCADE', unique=True)
        slot = pw.IntegerField()

        class Meta:
            table_name = "replica_chips"

    @migrator.create_model
    class ReplicaEvent(pw.Model):
        id = pw.AutoField()
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], on_delete='CASCADE')
        at = pw.DateTimeField()
        state = pw.CharField(max_length=16)
        reason = pw.CharField(default='', max_length=512)

        class Meta:
            table_name = "replica_events"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("nodes", "images")

    migrator.remove_model('replica_events')

    migrator.remove_model('replica_chips')

    migrator.remove_model('replicas')

    migrator.remove_model('subtasks')

    migrator.remove_model('tasks')

    migrator.remove_model('pool_limits')
