"""Users, groups, memberships and the scheduler's leader lease."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Group(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        description = pw.CharField(default='', max_length=256)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "groups"

    @migrator.create_model
    class LeaderLease(pw.Model):
        name = pw.CharField(max_length=32, primary_key=True)
        holder = pw.CharField(max_length=128)
        expires_at = pw.DateTimeField()
        last_tick_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "leader_lease"

    @migrator.create_model
    class User(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        display_name = pw.CharField(default='', max_length=128)
        role = pw.CharField(max_length=16)
        password_hash = pw.CharField(max_length=256)
        active = pw.BooleanField(default=True)
        locale = pw.CharField(max_length=16, null=True)
        session_nonce = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "users"

    @migrator.create_model
    class Membership(pw.Model):
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        group = pw.ForeignKeyField(column_name='group_id', field='id', model=migrator.orm['groups'], on_delete='CASCADE')

        class Meta:
            table_name = "memberships"
            primary_key = pw.CompositeKey('user', 'group')


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_model('memberships')

    migrator.remove_model('users')

    migrator.remove_model('leader_lease')

    migrator.remove_model('groups')
