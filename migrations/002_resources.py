"""Nodes and their chips, custom resources, resource specs, pools, settings, API tokens.

Also creates the default pool, which always exists.
"""

from datetime import UTC, datetime

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class ApiToken(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        name = pw.CharField(max_length=64)
        prefix = pw.CharField(max_length=16)
        token_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "api_tokens"

    @migrator.create_model
    class CustomResource(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        kind = pw.CharField(max_length=64)
        description = pw.CharField(default='', max_length=256)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "custom_resources"

    @migrator.create_model
    class Pool(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        description = pw.CharField(default='', max_length=256)
        is_default = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "pools"

    @migrator.create_model
    class Node(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        url = pw.CharField(max_length=512, unique=True)
        source = pw.CharField(default='manual', max_length=16)
        enabled = pw.BooleanField(default=True)
        hostname = pw.CharField(default='', max_length=255)
        address = pw.CharField(default='', max_length=255)
        os_name = pw.CharField(default='', max_length=255)
        kernel = pw.CharField(default='', max_length=255)
        podman_version = pw.CharField(default='', max_length=64)
        cpu_millis = pw.IntegerField(default=0)
        memory_mib = pw.IntegerField(default=0)
        labels = pw.TextField(default='{}')
        ready = pw.BooleanField(default=False)
        reason = pw.CharField(default='not discovered yet', max_length=512)
        ready_changed_at = pw.DateTimeField()
        last_seen_at = pw.DateTimeField(null=True)
        cordoned = pw.BooleanField(default=False)
        draining = pw.BooleanField(default=False)
        pool = pw.ForeignKeyField(column_name='pool_id', field='id', model=migrator.orm['pools'], null=True, on_delete='SET NULL')
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "nodes"

    @migrator.create_model
    class NodeChip(pw.Model):
        id = pw.AutoField()
        node = pw.ForeignKeyField(column_name='node_id', field='id', model=migrator.orm['nodes'], on_delete='CASCADE')
        kind = pw.CharField(max_length=64)
        index = pw.IntegerField()
        device = pw.CharField(max_length=255)
        card = pw.IntegerField(null=True)
        driver = pw.CharField(default='', max_length=64)

        class Meta:
            table_name = "node_chips"
            indexes = [(('node', 'kind', 'index'), True)]

    @migrator.create_model
    class PoolGroup(pw.Model):
        pool = pw.ForeignKeyField(column_name='pool_id', field='id', model=migrator.orm['pools'], on_delete='CASCADE')
        group = pw.ForeignKeyField(column_name='group_id', field='id', model=migrator.orm['groups'], on_delete='CASCADE')

        class Meta:
            table_name = "pool_groups"
            primary_key = pw.CompositeKey('pool', 'group')

    @migrator.create_model
    class ResourceSpec(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=96, unique=True)
        cpu_millis = pw.IntegerField()
        memory_mib = pw.IntegerField()
        price_per_hour = pw.BigIntegerField()
        enabled = pw.BooleanField(default=True)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "resource_specs"

    @migrator.create_model
    class Setting(pw.Model):
        key = pw.CharField(max_length=64, primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "settings"

    @migrator.create_model
    class SpecResource(pw.Model):
        spec = pw.ForeignKeyField(column_name='spec_id', field='id', model=migrator.orm['resource_specs'], on_delete='CASCADE')
        resource = pw.ForeignKeyField(column_name='resource_id', field='id', model=migrator.orm['custom_resources'], on_delete='RESTRICT')
        count = pw.IntegerField()

        class Meta:
            table_name = "spec_resources"
            primary_key = pw.CompositeKey('spec', 'resource')

    def create_default_pool():
        now = datetime.now(UTC).replace(tzinfo=None)
        migrator.orm["pools"].insert(name="default", is_default=True, created_at=now).execute()

    migrator.run(create_default_pool)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model('spec_resources')

    migrator.remove_model('settings')

    migrator.remove_model('resource_specs')

    migrator.remove_model('pool_groups')

    migrator.remove_model('node_chips')

    migrator.remove_model('nodes')

    migrator.remove_model('pools')

    migrator.remove_model('custom_resources')

    migrator.remove_model('api_tokens')
