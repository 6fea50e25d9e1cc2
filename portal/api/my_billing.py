"""The renter's own machine-time: the JSON twins of the overview's balance and of the
Machine-time page's records (read through ``portal.usage``; amounts in micro-units).

``GET /account/records`` takes ``kind`` (recharge, charge, adjust or refund), ``task``
(one of the caller's task ids; another renter's is 404) and ``before_id`` (the
``next_before_id`` of the previous page) in the query string.
"""

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import usage, values
from portal.api.auth import api_user
from portal.api.billing import records_page
from portal.api.errors import ApiError
from portal.api.registry import route
from portal.api.schema import Boolean, Integer, Record, String, iso
from portal.models import LEDGER_KINDS, Task
from portal.money import decimal_text
from portal.settings import get as setting

RECORDS_PAGE = 100

BALANCE = Record({
    "balance": Integer(_l("Micro-units (1 unit of the currency = 1,000,000)")),
    "balance_decimal": String(_l("The balance as an exact decimal string, e.g. \"12.50\"")),
    "currency": String(_l("The miner's currency label")),
    "spend_per_hour": Integer(_l("Micro-units per hour your running replicas cost now")),
    "runway_minutes": Integer(_l("Whole minutes the balance lasts at this spend; null while "
                                 "nothing runs"), nullable=True),
    "low": Boolean(_l("The balance is exhausted or lasts less than the miner's warning "
                      "level")),
}, name="Balance")

LEDGER_ROW = Record({
    "id": Integer(),
    "at": String(format="date-time"),
    "kind": String(_l("recharge, charge, adjust or refund")),
    "amount": Integer(_l("Signed micro-units: + credits you, - debits you")),
    "balance_after": Integer(_l("Your balance once this row applied, in micro-units")),
    "note": String(_l("The miner's note or reason")),
    "actor": String(_l("Who made it; null for metering and the billing command"),
                    nullable=True),
    "task": Integer(_l("The task a charge is for"), nullable=True),
    "task_name": String(nullable=True),
    "replica": Integer(_l("The replica a charge is for"), nullable=True),
    "spec": String(_l("The spec's name"), nullable=True),
    "node": String(_l("The node the replica ran on"), nullable=True),
    "price_per_hour": Integer(_l("The price snapshot, micro-units per machine-hour"),
                              nullable=True),
    "seconds_from": Integer(_l("Billed seconds of the replica before this charge"),
                            nullable=True),
    "seconds_to": Integer(_l("Billed seconds of the replica up to this charge"),
                          nullable=True),
}, name="LedgerRow")

RECORDS = records_page(LEDGER_ROW, "LedgerPage")


def ledger_row_json(row):
    return {"id": row.id, "at": iso(row.at), "kind": row.kind, "amount": row.amount,
            "balance_after": row.balance_after, "note": row.note, "actor": row.actor_name,
            "task": row.task_id, "task_name": row.task_name, "replica": row.replica_id,
            "spec": row.spec_name, "node": row.node_name, "price_per_hour": row.price_per_hour,
            "seconds_from": row.seconds_from, "seconds_to": row.seconds_to}


def _id_argument(name):
    """A positive integer query argument, or None when absent; 400 otherwise."""
    text = request.args.get(name, "")
    if not text:
        return None
    if (number := values.row_id(text)) is None:
        raise ApiError(400, "invalid", _("'%(field)s' must be a positive integer.", field=name))
    return number


@route("/account/balance", summary=_l("Your balance, what you spend per hour and how long it "
                                      "lasts"), role="renter", response=BALANCE)
def account_balance():
    standing = usage.standing(api_user())
    return {"balance": standing.balance, "balance_decimal": decimal_text(standing.balance),
            "currency": setting("currency"), "spend_per_hour": standing.spend_per_hour,
            "runway_minutes": standing.runway_minutes, "low": standing.low}


@route("/account/records",
       summary=_l("Your ledger rows, newest first, 100 at a time (query: kind, task, "
                  "before_id)"), role="renter", response=RECORDS)
def account_records():
    user = api_user()
    kind = request.args.get("kind") or None
    if kind is not None and kind not in LEDGER_KINDS:
        raise ApiError(400, "invalid", _("'kind' must be one of: %(kinds)s.",
                                         kinds=", ".join(LEDGER_KINDS)))
    task_id, before_id = _id_argument("task"), _id_argument("before_id")
    task = None
    if task_id is not None:
        task = Task.get_or_none(Task.id == task_id, Task.user == user)
        if task is None:
            raise ApiError(404, "not_found", _("You have no task %(id)d.", id=task_id))
    rows = usage.ledger_rows(user, kind=kind, task=task, before_id=before_id,
                             limit=RECORDS_PAGE + 1)
    more = len(rows) > RECORDS_PAGE
    rows = rows[:RECORDS_PAGE]
    return {"records": [ledger_row_json(row) for row in rows],
            "next_before_id": rows[-1].id if more else None}
