"""The renter's workspace: algorithms and datasets in versions (a dataset shared with
groups), restartable uploads, images (presets and a renter's own), task templates (shared
with groups), a maximum run time per task, notebook and pool. A notebook now names an
algorithm version (copied into its own folder) and a dataset version instead of folder
names; folders named by the old columns stay on disk, untouched."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class Algorithm(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='RESTRICT')
        name = pw.CharField(max_length=64)
        description = pw.CharField(default='', max_length=256)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "algorithms"
            indexes = [(('user', 'name'), True)]

    @migrator.create_model
    class AlgorithmVersion(pw.Model):
        id = pw.AutoField()
        algorithm = pw.ForeignKeyField(column_name='algorithm_id', field='id', model=migrator.orm['algorithms'], on_delete='CASCADE')
        number = pw.IntegerField()
        note = pw.CharField(default='', max_length=256)
        size_bytes = pw.BigIntegerField(default=0)
        file_count = pw.IntegerField(default=0)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "algorithm_versions"
            indexes = [(('algorithm', 'number'), True)]

    @migrator.create_model
    class Dataset(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='RESTRICT')
        name = pw.CharField(max_length=64)
        description = pw.CharField(default='', max_length=256)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "datasets"
            indexes = [(('user', 'name'), True)]

    @migrator.create_model
    class DatasetVersion(pw.Model):
        id = pw.AutoField()
        dataset = pw.ForeignKeyField(column_name='dataset_id', field='id', model=migrator.orm['datasets'], on_delete='CASCADE')
        number = pw.IntegerField()
        note = pw.CharField(default='', max_length=256)
        size_bytes = pw.BigIntegerField(default=0)
        file_count = pw.IntegerField(default=0)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "dataset_versions"
            indexes = [(('dataset', 'number'), True)]

    @migrator.create_model
    class DatasetShare(pw.Model):
        id = pw.AutoField()
        dataset = pw.ForeignKeyField(column_name='dataset_id', field='id', model=migrator.orm['datasets'], on_delete='CASCADE')
        group = pw.ForeignKeyField(column_name='group_id', field='id', model=migrator.orm['groups'], on_delete='CASCADE')

        class Meta:
            table_name = "dataset_shares"
            indexes = [(('dataset', 'group'), True)]

    @migrator.create_model
    class Upload(pw.Model):
        id = pw.AutoField()
        key = pw.CharField(max_length=64, unique=True)
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        filename = pw.CharField(max_length=255)
        size = pw.BigIntegerField()
        received = pw.BigIntegerField(default=0)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "uploads"

    @migrator.create_model
    class Image(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], null=True, on_delete='RESTRICT')
        name = pw.CharField(max_length=96)
        reference = pw.CharField(max_length=255, unique=True)
        source = pw.CharField(max_length=16)
        state = pw.CharField(default='ready', max_length=16)
        reason = pw.CharField(default='', max_length=512)
        jupyter = pw.BooleanField(default=False)
        size_bytes = pw.BigIntegerField(default=0)
        containerfile = pw.TextField(default='')
        log = pw.TextField(default='')
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "images"

    @migrator.create_model
    class TaskTemplate(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', model=migrator.orm['users'], on_delete='CASCADE')
        name = pw.CharField(max_length=96)
        description = pw.CharField(default='', max_length=256)
        definition = pw.TextField(default='{}')
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            table_name = "task_templates"
            indexes = [(('user', 'name'), True)]

    @migrator.create_model
    class TemplateShare(pw.Model):
        id = pw.AutoField()
        template = pw.ForeignKeyField(column_name='template_id', field='id', model=migrator.orm['task_templates'], on_delete='CASCADE')
        group = pw.ForeignKeyField(column_name='group_id', field='id', model=migrator.orm['groups'], on_delete='CASCADE')

        class Meta:
            table_name = "template_shares"
            indexes = [(('template', 'group'), True)]

    migrator.add_fields("pool_limits", max_run_minutes=pw.IntegerField(null=True))
    migrator.add_fields(
        "tasks",
        algorithm_version=pw.ForeignKeyField(column_name='algorithm_version_id', field='id', model=migrator.orm['algorithm_versions'], null=True, on_delete='SET NULL'),
        dataset_version=pw.ForeignKeyField(column_name='dataset_version_id', field='id', model=migrator.orm['dataset_versions'], null=True, on_delete='SET NULL'),
        max_run_minutes=pw.IntegerField(null=True),
        template=pw.ForeignKeyField(column_name='template_id', field='id', model=migrator.orm['task_templates'], null=True, on_delete='SET NULL'),
    )
    migrator.add_fields(
        "notebooks",
        algorithm_version=pw.ForeignKeyField(column_name='algorithm_version_id', field='id', model=migrator.orm['algorithm_versions'], null=True, on_delete='SET NULL'),
        dataset_version=pw.ForeignKeyField(column_name='dataset_version_id', field='id', model=migrator.orm['dataset_versions'], null=True, on_delete='SET NULL'),
        max_run_minutes=pw.IntegerField(null=True),
    )
    migrator.remove_fields("notebooks", "algorithm", "dataset")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields(
        "notebooks",
        algorithm=pw.CharField(default='', max_length=64),
        dataset=pw.CharField(default='', max_length=64),
    )
    for table, fields in (("notebooks", ("algorithm_version", "dataset_version")),
                          ("tasks", ("algorithm_version", "dataset_version", "template"))):
        for name in fields:
            migrator.drop_index(table, name)  # add_fields made it for the foreign key
    migrator.remove_fields("notebooks", "algorithm_version", "dataset_version", "max_run_minutes")
    migrator.remove_fields("tasks", "algorithm_version", "dataset_version", "max_run_minutes",
                           "template")
    migrator.remove_fields("pool_limits", "max_run_minutes")
    for table in ("template_shares", "task_templates", "images", "uploads", "dataset_shares",
                  "dataset_versions", "datasets", "algorithm_versions", "algorithms"):
        migrator.remove_model(table)
