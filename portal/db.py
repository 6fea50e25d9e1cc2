"""The database: a deferred peewee database, per-request connections, migrations.

SQLite in WAL mode under the instance folder by default; PostgreSQL when
``DATABASE_URL`` says so. The schema changes only through peewee-migrate
files in ``migrations/`` (``flask --app app db upgrade``).
"""

import inspect
from pathlib import Path

import click
from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    CharField,
    DatabaseProxy,
    Field,
    ForeignKeyField,
    IntegerField,
    SqliteDatabase,
    TextField,
    Value,
)
from peewee import __exception_wrapper__ as driver_errors  # raises them as peewee's errors
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


# Fields whose values come from SQLite and PostgreSQL as Python has them (int, str): read
# as they are. Others (booleans, times) go through the field's ``python_value``.
AS_STORED = (AutoField, BigAutoField, IntegerField, BigIntegerField, CharField, TextField)


def _converter(column):
    """How a selected column is read: None for "as it comes"."""
    if not isinstance(column, Field):
        return None
    field = column.rel_field if isinstance(column, ForeignKeyField) else column
    return None if type(field) in AS_STORED else column.python_value


class _Slot:
    """Where one of a prepared statement's values goes (``Prepared``)."""


class Prepared:
    """A statement whose SQL peewee writes out once per kind of database, then run with new
    values each time.

    Writing out a query costs peewee 0.1-0.5 ms, where SQLite runs a small one in a few
    microseconds; the statements that every API request and task submission runs are
    prepared. ``build`` gets one placeholder per argument (``arity``, by default its
    parameters) and returns the peewee query. It is called once per kind of database, so
    whatever else goes into the query is fixed then: no ``utcnow()``, no model defaults
    (``insert_row`` gives every column of a new row). Values are passed as the database
    takes them (ids, not rows). Safe from any thread.
    """

    def __init__(self, build, arity=None):
        self._build = build
        self._arity = len(inspect.signature(build).parameters) if arity is None else arity
        # {kind of database: (SQL, each parameter as (argument index, None) or (None, the
        # constant it always is), each column's converter or None)}
        self._made = {}

    def _statement(self):
        kind = type(database.obj)
        made = self._made.get(kind)
        if made is None:
            slots = [_Slot() for _ in range(self._arity)]
            query = self._build(*(Value(slot, converter=False, unpack=False) for slot in slots))
            sql, params = query.sql()
            at = {id(slot): index for index, slot in enumerate(slots)}
            params = [(at[id(p)], None) if isinstance(p, _Slot) else (None, p) for p in params]
            columns = getattr(query, "selected_columns", None) or ()
            converters = [_converter(column) for column in columns]
            made = self._made[kind] = (sql, params, converters)
        return made

    def execute(self, *values):
        """Run it with ``values``; the cursor."""
        sql, params, _converters = self._statement()
        return database.execute_sql(sql, [values[i] if i is not None else p for i, p in params])

    def execute_many(self, rows):
        """Run it once per sequence of values in ``rows`` (one ``executemany``)."""
        sql, params, _converters = self._statement()
        with driver_errors:  # an IntegrityError is peewee's, as from execute_sql
            cursor = database.cursor()
            cursor.executemany(sql, [[row[i] if i is not None else p for i, p in params]
                                     for row in rows])
        return cursor

    def rows(self, *values):
        """The rows it selects, as tuples; a column of a model's field reads as peewee
        reads that field (booleans, times)."""
        converters = self._statement()[2]
        rows = self.execute(*values).fetchall()
        if not any(converters):
            return rows
        return [tuple(v if convert is None or v is None else convert(v)
                      for convert, v in zip(converters, row, strict=False)) for row in rows]


def model_row(model, values):
    """A ``model`` instance of the values of its fields in the model's order (a prepared
    statement's row, selecting ``model._meta.sorted_fields``), made as peewee makes the
    rows it reads: no defaults computed first (``__no_default__``), nothing dirty."""
    row = model(__no_default__=True, **dict(zip(model._meta.sorted_field_names, values,
                                                strict=True)))
    row._dirty.clear()
    return row


_INSERTS = {}  # {(model, column names, returning id): Prepared}


def _insert_statement(model, names, returning):
    key = (model, names, returning)
    if key not in _INSERTS:
        fields = [model._meta.fields[name] for name in names]

        def build(*values):
            query = model.insert(dict(zip(fields, values, strict=True)))
            return query if returning else query.returning()  # PostgreSQL: no RETURNING

        _INSERTS[key] = Prepared(build, len(fields))
    return _INSERTS[key]


def _columns(row):
    """(names, values as the database takes them) of the fields set on ``row``, in the
    model's order; an id not yet given is left to the database."""
    data, primary_key = row.__data__, row._meta.primary_key
    fields = [field for field in row._meta.sorted_fields if field.name in data
              and not (field is primary_key and data[field.name] is None)]
    return (tuple(field.name for field in fields),
            [field.db_value(data[field.name]) for field in fields])


def insert_row(row):
    """Insert the new model instance ``row`` (its constructor applied the defaults) as
    ``save()`` would, through a prepared statement; sets and returns its id."""
    names, values = _columns(row)
    cursor = _insert_statement(type(row), names, True).execute(*values)
    row.id = cursor.fetchone()[0] if database.returning_clause else cursor.lastrowid
    return row.id


def insert_rows(rows):
    """Insert new model instances of one model, each with the same fields set, with one
    prepared statement; their ids are not read back."""
    if not rows:
        return
    names = _columns(rows[0])[0]
    _insert_statement(type(rows[0]), names, False).execute_many(
        [_columns(row)[1] for row in rows])


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
