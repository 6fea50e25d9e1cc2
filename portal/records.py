"""Reading the whole ledger for the miner: filters, keyset pages, per-renter and earnings sums.

Read-only: money is written only by ``portal.ledger``. Rows come newest first
and a page is found by keyset (the id of the row it continues from), never by
OFFSET or a count of the table, so page 20,000 of a million rows costs what
page 1 does. Filtered by renter, kind or days, rows are in (``at``, ``id``)
order, which the ledger's (user, at) and (kind, at) indexes hold as they are
(days alone: one (kind, at) range per kind, merged); otherwise in ``id`` order
(the primary key, or the index on task), the order they were written in.
"""

import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from peewee import Case, fn

from portal import values
from portal.ledger import month_start
from portal.models import (
    LEDGER_KINDS,
    EarningMonth,
    LedgerEntry,
    Node,
    Replica,
    ResourceSpec,
    Task,
    UsageMonth,
    User,
)

PAGE = 50  # rows per page on the Records page
BATCH = 1000  # rows per query while a CSV export streams
MAX_ID = 2**63 - 1
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
KIND_NAMES = {"recharge": _l("recharge"), "charge": _l("charge"), "adjust": _l("adjustment"),
              "refund": _l("refund")}


class FilterError(ValueError):
    """Filters that cannot be read; ``errors`` is {query parameter: message}."""

    def __init__(self, errors):
        super().__init__(" ".join(str(message) for message in errors.values()))
        self.errors = errors


@dataclass(frozen=True)
class Filters:
    """Which rows: a renter's id, a task's id, a kind, days (UTC, both included), and a
    replica's id (its charges)."""

    user: int | None = None
    task: int | None = None
    kind: str | None = None
    first_day: date | None = None
    last_day: date | None = None
    replica: int | None = None

    @property
    def by_time(self):
        """Whether rows are ordered by (at, id), through an index on (user|kind, at)."""
        return any(value is not None for value in (self.user, self.kind, self.first_day,
                                                   self.last_day))

    def per_kind(self):
        """The filters to query one by one: one per kind when only days are given (each then
        reads its own (kind, at) range, and the rows are merged), else just these."""
        if self.by_time and self.user is None and self.kind is None:
            return [replace(self, kind=kind) for kind in LEDGER_KINDS]
        return [self]

    def args(self):
        """The filters as query-string values (for links to other pages and the CSV)."""
        chosen = {"user": self.user, "task": self.task, "kind": self.kind,
                  "from": self.first_day and self.first_day.isoformat(),
                  "to": self.last_day and self.last_day.isoformat(), "replica": self.replica}
        return {key: value for key, value in chosen.items() if value is not None}

    def conditions(self):
        out = []
        if self.user is not None:
            out.append(LedgerEntry.user == self.user)
        if self.task is not None:
            out.append(LedgerEntry.task == self.task)
        if self.replica is not None:
            out.append(LedgerEntry.replica == self.replica)
        if self.kind is not None:
            out.append(LedgerEntry.kind == self.kind)
        if self.first_day is not None:
            out.append(LedgerEntry.at >= datetime.combine(self.first_day, datetime.min.time()))
        if self.last_day is not None and self.last_day < date.max:
            after = datetime.combine(self.last_day + timedelta(days=1), datetime.min.time())
            out.append(LedgerEntry.at < after)
        return out


def parse_id(text):
    """A positive row id from the query string, or None when ``text`` is not one."""
    return values.row_id(text, MAX_ID)


def _day(text):
    if not DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_filters(args):
    """``Filters`` from query-string ``args`` (``user``, ``task``, ``kind``, ``from``, ``to``,
    ``replica``; empty means any); raises FilterError naming each parameter it cannot read."""
    errors, found = {}, {}
    text = {key: (args.get(key) or "").strip()
            for key in ("user", "task", "kind", "from", "to", "replica")}
    for key, message in (("user", _("Choose a renter by their id, a whole number.")),
                         ("task", _("A task is given by its id, a whole number such as 42.")),
                         ("replica", _("A replica is given by its id, a whole number."))):
        if text[key]:
            found[key] = parse_id(text[key])
            if found[key] is None:
                errors[key] = message
    if text["kind"]:
        if text["kind"] in LEDGER_KINDS:
            found["kind"] = text["kind"]
        else:
            errors["kind"] = _("The kind is one of: %(kinds)s.", kinds=", ".join(LEDGER_KINDS))
    for key in ("from", "to"):
        if text[key]:
            found[key] = _day(text[key])
            if found[key] is None:
                errors[key] = _("Enter a date as YYYY-MM-DD, such as 2025-01-31.")
    if found.get("from") and found.get("to") and found["from"] > found["to"]:
        errors["to"] = _("The last day is before the first day.")
    if errors:
        raise FilterError(errors)
    return Filters(found.get("user"), found.get("task"), found.get("kind"),
                   found.get("from"), found.get("to"), found.get("replica"))


# --- pages of rows -------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Rows (``describe``'s dicts), newest first; ``newer`` / ``older``: the ids to continue
    from for the previous and next page, None where there is nothing more."""

    rows: list
    newer: int | None = None
    older: int | None = None


def _beyond(filters, at, entry_id, older):
    """The condition for rows after (``older``) or before the row (``at``, ``entry_id``) in
    the newest-first order. ``at <= x`` repeats the tie-break's bound so the index range
    starts at the cursor instead of the newest row."""
    if not filters.by_time:
        return LedgerEntry.id < entry_id if older else LedgerEntry.id > entry_id
    if older:
        return (LedgerEntry.at <= at) & ((LedgerEntry.at < at) | (
            (LedgerEntry.at == at) & (LedgerEntry.id < entry_id)))
    return (LedgerEntry.at >= at) & ((LedgerEntry.at > at) | (
        (LedgerEntry.at == at) & (LedgerEntry.id > entry_id)))


def _matching(query, filters):
    for condition in filters.conditions():
        query = query.where(condition)
    return query


def _fetch(filters, cursor, older, size):
    """Up to ``size`` LedgerEntry rows beyond ``cursor`` (a LedgerEntry, or None: from the
    newest or the oldest end), nearest the cursor first."""
    keys = [LedgerEntry.at, LedgerEntry.id] if filters.by_time else [LedgerEntry.id]
    found = []
    for part in filters.per_kind():
        query = _matching(LedgerEntry.select(), part)
        if cursor is not None:
            query = query.where(_beyond(part, cursor.at, cursor.id, older))
        found.extend(query.order_by(*[key.desc() if older else key.asc() for key in keys])
                     .limit(size))
    if len(filters.per_kind()) > 1:
        found.sort(key=lambda entry: (entry.at, entry.id), reverse=older)
    return found[:size]


def _exists_beyond(filters, entry, older):
    return any(_matching(LedgerEntry.select(LedgerEntry.id), part)
               .where(_beyond(part, entry.at, entry.id, older)).exists()
               for part in filters.per_kind())


def _cursor(entry_id):
    """The row a page continues from (its id and time), or None when there is no such row."""
    if entry_id is None:
        return None
    return (LedgerEntry.select(LedgerEntry.id, LedgerEntry.at)
            .where(LedgerEntry.id == entry_id).first())


def page(filters, before=None, after=None, size=PAGE):
    """A ``Page`` of the rows ``filters`` match: the newest, or those just older than row
    ``before``, or just newer than row ``after`` (ids). Three small queries and the names."""
    older = after is None
    anchor = before if older else after
    cursor = _cursor(anchor)
    if anchor is not None and cursor is None:
        return Page([])
    rows = _fetch(filters, cursor, older, size)
    if not older:
        rows.reverse()
    if not rows:
        return Page([])
    newer = rows[0].id if _exists_beyond(filters, rows[0], older=False) else None
    oldest = rows[-1].id if _exists_beyond(filters, rows[-1], older=True) else None
    return Page(describe(rows), newer, oldest)


def each(filters, batch=BATCH):
    """Every row ``filters`` match, newest first, as ``describe``'s dicts; one query per
    ``batch`` rows, so a large export holds no long read open."""
    cursor = None
    while True:
        rows = _fetch(filters, cursor, True, batch)
        yield from describe(rows)
        if len(rows) < batch:
            return
        cursor = rows[-1]


def _names(model, ids):
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(model.select(model.id, model.name).where(model.id.in_(list(ids))).tuples())


def describe(entries):
    """LedgerEntry rows as dicts with the names of their renter, actor, task, spec and node
    (None where the row names none, or its node was removed); four small queries."""
    users = _names(User, [e.user_id for e in entries] + [e.actor_id for e in entries])
    tasks = _names(Task, [e.task_id for e in entries])
    specs = _names(ResourceSpec, [e.spec_id for e in entries])
    nodes = _names(Node, [e.node_id for e in entries])
    return [{
        "id": e.id, "at": e.at, "user_id": e.user_id, "user": users.get(e.user_id),
        "kind": e.kind, "amount": e.amount, "balance_after": e.balance_after,
        "actor": users.get(e.actor_id), "note": e.note, "task_id": e.task_id,
        "task": tasks.get(e.task_id), "replica_id": e.replica_id, "spec": specs.get(e.spec_id),
        "node": nodes.get(e.node_id), "price_per_hour": e.price_per_hour,
        "seconds_from": e.seconds_from, "seconds_to": e.seconds_to,
    } for e in entries]


# --- sums ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenterSummary:
    """A renter's standing as the miner sees it; money in micro-units."""

    user: User
    balance: int
    used_this_month: int
    running: int
    spend_per_hour: int


def renter_summaries():
    """Every renter's ``RenterSummary``, by name: three queries whatever their number."""
    renters = list(User.select().where(User.role == "renter").order_by(User.name))
    used = dict(UsageMonth.select(UsageMonth.user, UsageMonth.charged)
                .where(UsageMonth.month == month_start().date()).tuples())
    running = {user: (count, per_hour) for user, count, per_hour in (
        Replica.select(Task.user, fn.COUNT(Replica.id), fn.SUM(Replica.price_per_hour))
        .join(Task).where(Replica.state == "running").group_by(Task.user).tuples())}
    return [RenterSummary(user, user.balance, used.get(user.id, 0),
                          running.get(user.id, (0, 0))[0],
                          int(running.get(user.id, (0, 0))[1] or 0))
            for user in renters]


@dataclass(frozen=True)
class Earning:
    """What charges on one node or spec came to: ``this_month`` and ``all_time`` (micro)."""

    name: str | None
    this_month: int
    all_time: int


def earnings():
    """``(per node, per spec)``: lists of ``Earning`` from the monthly earnings the ledger
    keeps beside its charges (``EarningMonth``), the largest first; ``name`` None for a node
    that was removed (all of those one entry). A row per month, node and spec, not the
    ledger."""
    month = Case(None, [(EarningMonth.month == month_start().date(), EarningMonth.charged)], 0)
    sums = (EarningMonth.select(EarningMonth.node, EarningMonth.spec, fn.SUM(month),
                                fn.SUM(EarningMonth.charged))
            .group_by(EarningMonth.node, EarningMonth.spec).tuples())
    by_node, by_spec = {}, {}
    for node, spec, this, total in sums:
        for totals, key in ((by_node, node), (by_spec, spec)):
            before = totals.get(key, (0, 0))
            totals[key] = (before[0] + int(this or 0), before[1] + int(total or 0))
    return _earnings(by_node, Node), _earnings(by_spec, ResourceSpec)


def _earnings(totals, model):
    """``Earning`` per id of ``model`` in ``totals`` ({id: (this month, all time)}); ids of
    no row (0: none, or removed) are merged into one entry named None."""
    names = _names(model, totals)
    merged = {}
    for key, (this, total) in totals.items():
        name = names.get(key)
        before = merged.get(name, (0, 0))
        merged[name] = (before[0] + this, before[1] + total)
    return sorted((Earning(name, this, total) for name, (this, total) in merged.items()),
                  key=lambda e: (-e.all_time, e.name or ""))
