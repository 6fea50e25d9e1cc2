"""One bad node never stops the others: a chip missing from a discovery is marked absent
(never deleted while a replica may hold it), and a replica counts the passes its start
found its node not answering."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.add_fields("node_chips", present=pw.BooleanField(default=True))
    migrator.add_fields("replicas", start_attempts=pw.IntegerField(default=0))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    migrator.remove_fields("replicas", "start_attempts")
    migrator.remove_fields("node_chips", "present")
