"""The notebook proxy: one-time grants from the portal's Open, and access sessions on the
notebook origin (only SHA-256 hashes of their tokens are stored)."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class NotebookGrant(pw.Model):
        id = pw.AutoField()
        token_hash = pw.CharField(max_length=64, unique=True)
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        replica = pw.ForeignKeyField(column_name='replica_id', field='id', model=migrator.orm['replicas'], on_delete='CASCADE')
        login_id = pw.CharField(index=True, max_length=64)
        origin = pw.CharField(max_length=255)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()
        used = pw.BooleanField(default=False)

        class Meta:
            table_name = "notebook_grants"

    @migrator.create_model
    class NotebookAccess(pw.Model):
        id = pw.AutoField()
        token_hash = pw.CharField(max_length=64, unique=True)
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        login_id = pw.CharField(index=True, max_length=64)
        nonce = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()

        class Meta:
            table_name = "notebook_access"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model('notebook_access')
    migrator.remove_model('notebook_grants')
