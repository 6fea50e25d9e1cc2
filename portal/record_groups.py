"""The miner's records with each replica's charges as one row, a page at a time.

A group is either every charge of one replica among the rows some ``records.Filters``
match, or one other matching row alone. Groups are made in SQL (GROUP BY) over exactly
the matching rows, so a replica's row sums only its charges the filters let through (its
charges of June when June is asked for). Groups come newest first by their newest row,
in the order ``records`` pages rows ((at, id) when filtered by renter, kind or days, else
id), and a page continues from a group's newest row (its id): a replica is on one page
only. A page costs the same few queries whatever the number of rows; each of them groups
every matching row.
"""

from dataclasses import dataclass

from peewee import Case, fn

from portal import records
from portal.models import LedgerEntry

PAGE = records.PAGE

# Which group a row is in: minus its replica's id for a replica's charge, else its own id.
_CHARGE = (LedgerEntry.kind == "charge") & LedgerEntry.replica.is_null(False)
_KEY = Case(None, [(_CHARGE, LedgerEntry.replica * -1)], LedgerEntry.id)
_NEWEST_ID = fn.MAX(LedgerEntry.id)
_NEWEST_AT = fn.MAX(LedgerEntry.at)


@dataclass(frozen=True)
class ReplicaCharges:
    """The charges of one replica that the filters match: how many, their sum (micro-units,
    negative: a debit) and the seconds of its run they cover (``first`` exclusive to
    ``last``)."""

    count: int
    amount: int
    first: int
    last: int


def _grouped(filters):
    """(key, newest id, newest time, count, sum, first second, last second) per group."""
    query = LedgerEntry.select(
        _KEY, _NEWEST_ID, _NEWEST_AT, fn.COUNT(LedgerEntry.id), fn.SUM(LedgerEntry.amount),
        fn.MIN(LedgerEntry.seconds_from), fn.MAX(LedgerEntry.seconds_to))
    for condition in filters.conditions():
        query = query.where(condition)
    return query.group_by(_KEY)


def _bounds(filters, entry_id):
    """(newest id, newest time) of the matching group of row ``entry_id``, or None."""
    key = LedgerEntry.select(_KEY).where(LedgerEntry.id == entry_id).scalar()
    if key is None:
        return None
    found = _grouped(filters).where(_KEY == key).tuples().first()
    return None if found is None else (found[1], found[2])


def _beyond(filters, bounds, older):
    """HAVING: the groups after (``older``) or before the group ``bounds`` newest first."""
    newest_id, newest_at = bounds
    if not filters.by_time:
        return _NEWEST_ID < newest_id if older else _NEWEST_ID > newest_id
    if older:
        return (_NEWEST_AT < newest_at) | ((_NEWEST_AT == newest_at) & (_NEWEST_ID < newest_id))
    return (_NEWEST_AT > newest_at) | ((_NEWEST_AT == newest_at) & (_NEWEST_ID > newest_id))


def _fetch(filters, bounds, older, size):
    keys = [_NEWEST_AT, _NEWEST_ID] if filters.by_time else [_NEWEST_ID]
    query = _grouped(filters)
    if bounds is not None:
        query = query.having(_beyond(filters, bounds, older))
    return list(query.order_by(*[key.desc() if older else key.asc() for key in keys])
                .limit(size).tuples())


def page(filters, before=None, after=None, size=PAGE):
    """A ``records.Page`` of the groups ``filters`` match: the newest, or those just older
    than the group whose newest row is ``before``, or just newer than ``after`` (ids). Each
    row is the group's newest row (``records.describe``), a replica's charges counted more
    than once with ``replica_charges`` (``ReplicaCharges``). At most eight queries."""
    older = after is None
    anchor = before if older else after
    bounds = None
    if anchor is not None:
        bounds = _bounds(filters, anchor)
        if bounds is None:
            return records.Page([])
    found = _fetch(filters, bounds, older, size + 1)
    more = len(found) > size
    found = found[:size]
    if not older:
        found.reverse()
    if not found:
        return records.Page([])
    # Coming from a group, that group is beyond this page on the side it came from.
    newer = found[0][1] if (more if not older else bounds is not None) else None
    oldest = found[-1][1] if (more if older else True) else None
    return records.Page(_rows(found), newer, oldest)


def _rows(found):
    entries = {e.id: e for e in LedgerEntry.select().where(
        LedgerEntry.id.in_([group[1] for group in found]))}
    rows = records.describe([entries[group[1]] for group in found])
    for index, (key, _newest, _at, count, amount, first, last) in enumerate(found):
        if key < 0 and count > 1:
            rows[index]["replica_charges"] = ReplicaCharges(count, int(amount), first or 0,
                                                            last or 0)
    return rows
