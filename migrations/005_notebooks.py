"""Notebooks: the notebooks table, a task's notebook and Jupyter token (its run), and
where a notebook replica's JupyterLab answers."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Notebook(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='RESTRICT')
        name = pw.CharField(max_length=96)
        image = pw.CharField(max_length=255)
        spec = pw.ForeignKeyField(column_name='spec_id', field='id', model=migrator.orm['resource_specs'], null=True, on_delete='SET NULL')
        pool = pw.ForeignKeyField(column_name='pool_id', field='id', model=migrator.orm['pools'], null=True, on_delete='SET NULL')
        count = pw.IntegerField(default=1)
        algorithm = pw.CharField(default='', max_length=64)
        dataset = pw.CharField(default='', max_length=64)
        created_at = pw.DateTimeField()
        deleted = pw.BooleanField(default=False)

        class Meta:
            table_name = "notebooks"

    migrator.add_fields(
        "tasks",
        notebook=pw.ForeignKeyField(column_name='notebook_id', field='id', model=migrator.orm['notebooks'], null=True, on_delete='SET NULL'),
        secret=pw.CharField(default='', max_length=64),
    )
    migrator.add_fields("replicas", address=pw.CharField(default='', max_length=64))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("replicas", "address")
    migrator.drop_index("tasks", "notebook")  # add_fields made it for the foreign key
    migrator.remove_fields("tasks", "notebook", "secret")
    migrator.remove_model('notebooks')
