"""Slurm pools (docs/slurm.md): a lab's Slurm clusters, a pool mapped to one of their
partitions, compute nodes found by a cluster's discovery, and a task's Slurm job."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    @migrator.create_model
    class SlurmCluster(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        rest_url = pw.CharField(max_length=512)
        user = pw.CharField(default='', max_length=64)
        token = pw.TextField(default='')
        podman_url = pw.CharField(default='ssh://root@{address}/run/podman/podman.sock', max_length=512)
        host_root = pw.CharField(default='/', max_length=512)
        created_at = pw.DateTimeField()

        class Meta:
            table_name = "slurm_clusters"

    migrator.add_fields(
        "pools",
        slurm_cluster=pw.ForeignKeyField(column_name='slurm_cluster_id', field='id', model=migrator.orm['slurm_clusters'], null=True, on_delete='RESTRICT'),
        partition=pw.CharField(default='', max_length=128),
    )
    migrator.add_fields(
        "nodes",
        slurm_cluster=pw.ForeignKeyField(column_name='slurm_cluster_id', field='id', model=migrator.orm['slurm_clusters'], null=True, on_delete='CASCADE'),
    )
    migrator.add_fields("tasks", slurm_job=pw.BigIntegerField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    for table in ("pools", "nodes"):
        migrator.drop_index(table, "slurm_cluster")  # add_fields made it for the foreign key
    migrator.remove_fields("tasks", "slurm_job")
    migrator.remove_fields("nodes", "slurm_cluster")
    migrator.remove_fields("pools", "slurm_cluster", "partition")
    migrator.remove_model("slurm_clusters")
