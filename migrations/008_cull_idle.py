"""Idle culling of notebooks: a pool's idle time after which its notebooks stop, and the
last JupyterLab activity seen of each notebook replica."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields("pool_limits", cull_idle_minutes=pw.IntegerField(null=True))
    migrator.add_fields("replicas", last_activity_at=pw.DateTimeField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("replicas", "last_activity_at")
    migrator.remove_fields("pool_limits", "cull_idle_minutes")
