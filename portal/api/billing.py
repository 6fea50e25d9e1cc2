"""Billing for the miner: renters' balances, recharges and corrections, the ledger's records.

The twin of the Machine-time pages (``portal.miner.billing``), through the same
ledger (``portal.ledger``) and queries (``portal.records``). Amounts go out as
integer micro-units (1 unit = 1000000) with an exact decimal string beside them
(``*_decimal``), and come in as decimal strings ("12.5", "-3"), never JSON
numbers, so no float ever touches money. Records come newest first, 100 a page;
``next_before_id`` asks for the next one.
"""

from flask import request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal import ledger, records, values
from portal.api.auth import api_user
from portal.api.errors import ApiError, refused
from portal.api.registry import route
from portal.api.resources import get_or_404
from portal.api.schema import Array, Boolean, Integer, Object, Record, String, Text, iso
from portal.models import User
from portal.money import AmountError, decimal_text, parse_amount, parse_signed_amount

API_PAGE = 100  # records per page
MICRO = _l("in micro-units (1 unit of the miner's currency = 1000000)")
DECIMAL = _l("the same as an exact decimal string of the currency, e.g. \"12.50\"")

RENTER = Record({
    "id": Integer(),
    "name": String(),
    "display_name": String(),
    "active": Boolean(),
    "balance": Integer(_l("The balance, %(unit)s", unit=MICRO)),
    "balance_decimal": String(DECIMAL),
    "used_this_month": Integer(_l("Charges since the 1st of this month (UTC), %(unit)s",
                                  unit=MICRO)),
    "running_replicas": Integer(),
    "spend_per_hour": Integer(_l("What the running replicas cost per hour, %(unit)s",
                                 unit=MICRO)),
}, name="BillingRenter")

LEDGER_RECORD = Record({
    "id": Integer(),
    "at": String(format="date-time"),
    "user": Integer(_l("The renter's id")),
    "user_name": String(),
    "kind": String(_l("recharge, charge, adjust or refund")),
    "amount": Integer(_l("Signed (+ credits the renter), %(unit)s", unit=MICRO)),
    "amount_decimal": String(DECIMAL),
    "balance_after": Integer(_l("The balance once it applied, %(unit)s", unit=MICRO)),
    "balance_after_decimal": String(DECIMAL),
    "actor": String(_l("Who did it; null: metering or the command line"), nullable=True),
    "note": String(_l("A recharge's note, or a correction's reason")),
    "task": Integer(_l("A charge's task id"), nullable=True),
    "task_name": String(nullable=True),
    "replica": Integer(_l("A charge's replica id"), nullable=True),
    "spec": String(_l("A charge's spec"), nullable=True),
    "node": String(_l("A charge's node (null once removed)"), nullable=True),
    "price_per_hour": Integer(_l("A charge's price snapshot, %(unit)s", unit=MICRO),
                              nullable=True),
    "seconds_from": Integer(_l("A charge covers the replica's run after this second..."),
                            nullable=True),
    "seconds_to": Integer(_l("...up to this one, included"), nullable=True),
}, name="LedgerRecord")


def records_page(record, name):
    """The schema of a page of ledger records (``record`` each, newest first, 100 at the
    most) and of the ``next_before_id`` that asks for the next page."""
    return Record({
        "records": Array(record, _l("Newest first, at most 100")),
        "next_before_id": Integer(_l("Send it as before_id for the next page; null on the "
                                     "last"), nullable=True),
    }, name=name)


RECORDS = records_page(LEDGER_RECORD, "LedgerRecordPage")

RECHARGE = Object({
    "amount": String(_l("More than zero, in the miner's currency, as a decimal string such "
                        "as \"12.5\" (at most 6 decimals; never a JSON number)"),
                     pattern=values.AMOUNT, rule=_l("an amount more than zero, at most 6 "
                                                    "decimals")),
    "note": Text(ledger.NOTE_MAX, _l("Shown on the renter's records")),
}, required=("amount",), name="Recharge")

ADJUST = Object({
    "amount": String(_l("A decimal string, not zero: \"-3\" takes money off (an adjust only), "
                        "\"3\" adds it"), pattern=values.SIGNED_AMOUNT,
                     rule=_l("an amount, not zero, at most 6 decimals")),
    "kind": String(_l("adjust (the default; either sign) or refund (more than zero; a "
                      "negative amount: 409)"), enum=("adjust", "refund")),
    "reason": Text(ledger.NOTE_MAX, _l("Shown on the renter's records"), required=True),
}, required=("amount", "reason"), name="Adjustment")


def renter_json(summary):
    user = summary.user
    return {"id": user.id, "name": user.name, "display_name": user.display_name,
            "active": user.active, "balance": summary.balance,
            "balance_decimal": decimal_text(summary.balance),
            "used_this_month": summary.used_this_month, "running_replicas": summary.running,
            "spend_per_hour": summary.spend_per_hour}


def record_json(row):
    """One of ``records.describe``'s dicts as the API sends it."""
    return {"id": row["id"], "at": iso(row["at"]), "user": row["user_id"],
            "user_name": row["user"], "kind": row["kind"], "amount": row["amount"],
            "amount_decimal": decimal_text(row["amount"]), "balance_after": row["balance_after"],
            "balance_after_decimal": decimal_text(row["balance_after"]), "actor": row["actor"],
            "note": row["note"], "task": row["task_id"], "task_name": row["task"],
            "replica": row["replica_id"], "spec": row["spec"], "node": row["node"],
            "price_per_hour": row["price_per_hour"], "seconds_from": row["seconds_from"],
            "seconds_to": row["seconds_to"]}


def _written(entry):
    return record_json(records.describe([entry])[0])


def _user_or_404(user_id):
    return get_or_404(User, user_id, _("There is no user %(id)d.", id=user_id))


def _refused(exc, field="amount"):
    return refused(str(exc), {field: str(exc)})


@route("/billing/renters", summary=_l("Every renter's balance, use this month and spend per "
                                      "hour"), role="miner", response=Array(RENTER))
def list_billing_renters():
    return [renter_json(summary) for summary in records.renter_summaries()]


@route("/billing/renters/<int:user_id>/recharge", "POST",
       summary=_l("Recharge a renter (amount as a decimal string)"), role="miner",
       body=RECHARGE, response=LEDGER_RECORD, status=201)
def recharge_renter_api(user_id, body):
    user = _user_or_404(user_id)
    try:
        amount = parse_amount(body["amount"], allow_zero=False)
        entry = ledger.recharge(user, amount, api_user().id, body.get("note", ""))
    except AmountError as exc:
        raise _refused(exc) from None
    except ledger.LedgerError as exc:
        raise refused(str(exc)) from None
    return _written(entry)


@route("/billing/renters/<int:user_id>/adjust", "POST",
       summary=_l("Correct a renter's balance (adjust, either sign) or refund, with a reason"),
       role="miner", body=ADJUST, response=LEDGER_RECORD, status=201)
def adjust_renter_api(user_id, body):
    user = _user_or_404(user_id)
    kind = body.get("kind", "adjust")
    try:
        entry = ledger.adjust(user, parse_signed_amount(body["amount"]), api_user().id,
                              body["reason"], kind)
    except AmountError as exc:
        raise _refused(exc) from None
    except ledger.LedgerError as exc:
        raise refused(str(exc)) from None
    return _written(entry)


@route("/billing/records", summary=_l(
    "Ledger records, newest first, 100 a page; query: user (renter id), task (id), kind, "
    "from and to (YYYY-MM-DD, UTC, both included), replica (id), before_id"), role="miner",
    response=RECORDS)
def list_billing_records():
    try:
        filters = records.parse_filters(request.args)
    except records.FilterError as exc:
        raise ApiError(400, "invalid", str(exc), exc.errors) from None
    before = request.args.get("before_id")
    before_id = records.parse_id(before) if before else None
    if before and before_id is None:
        message = _("'before_id' is the id of a record, a whole number.")
        raise ApiError(400, "invalid", message, {"before_id": message})
    found = records.page(filters, before=before_id, size=API_PAGE)
    return {"records": [record_json(row) for row in found.rows], "next_before_id": found.older}
