"""The database: a deferred peewee database, per-request connections, migrations.

SQLite in WAL mode under the instance folder by default; PostgreSQL when
``DATABASE_URL`` says so. The schema changes only through peewee-migrate
files in ``migrations/`` (``flask --app app db upgrade``).
"""

from pathlib import Path

import click
from peewee import DatabaseProxy, SqliteDatabase
from peewee_migrate import Router
from playhouse.db_url import connect

database = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
}


def open_database(url):
    """Return a peewee database for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite"):
        # BEGIN IMMEDIATE: a transaction that reads before it writes would otherwise
        # fail at once with "database is locked" when another connection wrote
        # in between (WAL), whatever busy_timeout says.
        return connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE")
    return connect(url)


def router():
    """The peewee-migrate router over this project's ``migrations/`` folder."""
    return Router(database, migrate_dir=MIGRATIONS_DIR)


def upgrade():
    """Apply every migration not yet applied; returns the names applied.

    On SQLite, adding a NOT NULL column rebuilds its table (copy, drop, rename), which
    foreign keys pointing at it forbid while they are enforced: as SQLite's documentation
    says, they are off while migrating and checked once it is done.
    """
    sqlite = isinstance(database.obj, SqliteDatabase)
    if sqlite:
        database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        applied = router().run()
        if sqlite:
            broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")
    finally:
        if sqlite:
            database.execute_sql("PRAGMA foreign_keys = ON")
    return applied


def _close(exc=None):
    if not database.is_closed():
        database.close()


def init_app(app):
    """Bind the models to ``DATABASE_URL`` and add the ``db`` CLI.

    A request connects on its first query (so ``/healthz`` can report a
    database that is down) and closes at teardown.
    """
    database.initialize(open_database(app.config["DATABASE_URL"]))
    app.teardown_appcontext(_close)
    app.cli.add_command(db_cli)


@click.group("db", help="Database schema commands.")
def db_cli():
    pass


@db_cli.command("upgrade", help="Apply pending migrations.")
def upgrade_command():
    applied = upgrade()
    click.echo(f"Applied {len(applied)} migration(s)." if applied else "Database is up to date.")
