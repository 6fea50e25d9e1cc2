"""Deleting a row that other rows still use: refused, saying what uses it.

Every delete of a row that a page or the API makes (a custom resource, a spec, a
pool, a group, a node, a token, a Slurm cluster) goes through ``delete_unused``. In one
transaction it counts the rows that hold the row back and, if there are any,
raises ``InUse`` ("'small' is used by 3 tasks and 2 ledger rows.") and deletes
nothing; the pages show that message and the API answers 409 ``conflict``.

What holds a row back is read from the models, not listed per delete: every
foreign key to it whose ``on_delete`` is neither CASCADE nor SET NULL (the
database itself would refuse the delete), and the references in ``ALSO_HOLDS``,
which the database would drop with the row but which must not go unnoticed: a
pool's binding to a group decides who may use the pool (without it the default
pool serves every renter). What a delete moves out of the way first (a pool's
ended tasks go to the default pool) its caller does in the same transaction,
before calling ``delete_unused``.

The count and the delete share a transaction. On SQLite it is IMMEDIATE, so no
row can arrive between them; on PostgreSQL a row committed in between makes the
database refuse the delete (IntegrityError), which a savepoint contains: the
rows are counted again in the same transaction and refused the same way.
"""

import operator
from dataclasses import dataclass
from functools import reduce

from babel.lists import format_list
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from peewee import IntegrityError, fn

from portal.db import database
from portal.models import (
    CustomResource,
    Group,
    LedgerEntry,
    Pool,
    PoolGroup,
    ResourceSpec,
    SlurmCluster,
    SpecResource,
    Subtask,
    Task,
)

LETS_GO = ("CASCADE", "SET NULL")
ALSO_HOLDS = ((PoolGroup, "group"),)  # (referencing model, foreign key name)
NAMES_SHOWN = 5


@dataclass(frozen=True)
class Use:
    """How the rows of one referencing model are counted and said: ``counted`` is counted
    once per distinct value (one task, however many of its subtasks use a spec); ``noun``
    says ``(count, names)``; ``named`` is the name column of the rows ``counted`` points
    at, listed when the miner can act on them (take a resource out of a spec)."""

    counted: object
    noun: object
    named: object = None


def _uses():
    return {
        SpecResource: Use(SpecResource.spec, lambda n, names: ngettext(
            "%(num)d spec (%(names)s)", "%(num)d specs (%(names)s)", n, names=names),
            ResourceSpec.name),
        PoolGroup: Use(PoolGroup.pool, lambda n, names: ngettext(
            "%(num)d pool (%(names)s)", "%(num)d pools (%(names)s)", n, names=names),
            Pool.name),
        Pool: Use(Pool.id, lambda n, names: ngettext(
            "%(num)d pool (%(names)s)", "%(num)d pools (%(names)s)", n, names=names),
            Pool.name),
        Subtask: Use(Subtask.task, lambda n, _names: ngettext(
            "%(num)d task", "%(num)d tasks", n)),
        Task: Use(Task.id, lambda n, _names: ngettext("%(num)d task", "%(num)d tasks", n)),
        LedgerEntry: Use(LedgerEntry.id, lambda n, _names: ngettext(
            "%(num)d ledger row", "%(num)d ledger rows", n)),
    }


def _hints():
    """What the miner can do instead, by the model refused."""
    return {
        CustomResource: _("Take it out of those specs first."),
        ResourceSpec: _("Tasks and charges keep their spec for billing: disable it instead."),
        Group: _("Unbind it from those pools first."),
        SlurmCluster: _("Make those pools Podman pools first (their Slurm partition)."),
    }


def holding_references(model):
    """The foreign keys of other models (or ``model`` itself) whose rows hold a row of
    ``model`` back from being deleted, in the order the models declare them."""
    return [fk for fk in model._meta.backrefs
            if (fk.on_delete or "").upper() not in LETS_GO
            or (fk.model, fk.name) in ALSO_HOLDS]


def uses_of(row):
    """``[(referencing model, count, names)]`` of the rows holding ``row`` back; empty when
    it may go. ``names`` lists up to ``NAMES_SHOWN`` + 1 names, for models that have them."""
    by_model = {}
    for fk in holding_references(type(row)):
        by_model.setdefault(fk.model, []).append(fk)
    uses, known = [], _uses()
    for referrer, fks in by_model.items():
        where = reduce(operator.or_, [fk == row.__data__[fk.rel_field.name] for fk in fks])
        use = known.get(referrer)
        if use is None:
            count = referrer.select().where(where).count()
        else:
            count = referrer.select(fn.COUNT(fn.DISTINCT(use.counted))).where(where).scalar()
        if not count:
            continue
        names = []
        if use is not None and use.named is not None:
            target = use.named.model
            names = [name for (name,) in target.select(use.named)
                     .where(target._meta.primary_key.in_(referrer.select(use.counted)
                                                         .where(where)))
                     .order_by(use.named).limit(NAMES_SHOWN + 1).tuples()]
        uses.append((referrer, count, names))
    return uses


def describe(uses):
    """``uses_of``'s answer for people: "3 tasks and 2 ledger rows"."""
    known, parts = _uses(), []
    for referrer, count, names in uses:
        shown = ", ".join(names[:NAMES_SHOWN]) + (", …" if len(names) > NAMES_SHOWN else "")
        use = known.get(referrer)
        if use is None:
            parts.append(ngettext("%(num)d row of %(table)s", "%(num)d rows of %(table)s",
                                  count, table=referrer._meta.table_name))
        else:
            parts.append(use.noun(count, shown))
    return format_list(parts, locale=get_locale() or "en")


class InUse(ValueError):
    """A delete refused because rows still use ``row``; ``uses`` is ``uses_of``'s answer
    (empty when the database refused for a reason no longer found)."""

    def __init__(self, row, uses):
        self.row, self.uses = row, uses
        name = getattr(row, "name", None) or str(row.get_id())
        if uses:
            message = _("'%(name)s' is used by %(uses)s.", name=name, uses=describe(uses))
            hint = _hints().get(type(row))
            message = f"{message} {hint}" if hint else message
        else:
            message = _("'%(name)s' is still in use, so it was not deleted: reload the page.",
                        name=name)
        super().__init__(message)


def delete_unused(row):
    """Delete ``row`` unless rows hold it back; then raise InUse and delete nothing.

    Called by every delete of the pages and the API, inside the transaction of what it
    moved out of the way first (raising rolls that back too). The database deletes or
    empties the references that let go (CASCADE, SET NULL).
    """
    with database.atomic():
        uses = uses_of(row)
        if uses:
            raise InUse(row, uses)
        try:
            with database.atomic():  # a savepoint: PostgreSQL's transaction stays usable
                row.delete_instance()
        except IntegrityError:
            raise InUse(row, uses_of(row)) from None
