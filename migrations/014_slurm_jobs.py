"""Slurm jobs (docs/slurm.md): compute nodes may share one Podman service (a cluster on one
host), so a node's URL is no longer unique; a Slurm node's own host root; and whether a
task's Slurm job is over (cancelled by Hourglass or ended by Slurm)."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.sql("DROP INDEX node_url")  # the unique index (named after the model)
    migrator.add_index("nodes", "url", unique=False)
    migrator.add_fields("nodes", host_root=pw.CharField(default='', max_length=512))
    migrator.add_fields("tasks", slurm_job_done=pw.BooleanField(default=False))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("tasks", "slurm_job_done")
    migrator.remove_fields("nodes", "host_root")
    migrator.drop_index("nodes", "url")
    migrator.sql("CREATE UNIQUE INDEX node_url ON nodes (url)")
