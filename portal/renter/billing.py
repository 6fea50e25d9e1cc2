"""The renter's Machine-time page: balance, consumption records (task -> subtask -> replica,
newest tasks first, a page at a time), recharge records, and a CSV of their own ledger rows.

The numbers are the ledger's own (``Replica.charged``, ``LedgerEntry``), read through
``portal.usage``; ``?task=ID`` narrows the records to one of the renter's tasks (another
renter's is 404).
"""

from datetime import UTC, datetime

from flask import Response, render_template, request, stream_with_context
from flask_login import current_user

from portal import usage, values
from portal.csv_export import csv_rows
from portal.money import decimal_number
from portal.renter.blueprint import bp
from portal.settings import get as setting

CSV_BATCH = 500  # ledger rows read per query while the CSV streams
CSV_HEADER = ["id", "at_utc", "kind", "amount", "balance_after", "currency", "task_id", "task",
              "replica_id", "spec", "node", "price_per_hour", "seconds_from", "seconds_to",
              "note", "by"]


@bp.get("/billing")
def billing():
    task = None
    if request.args.get("task"):
        task = usage.own_task_or_404(current_user, values.row_id(request.args["task"]) or 0)
    records = usage.consumption(current_user, usage.page_number(request.args.get("page")), task)
    credits = usage.credits(current_user, usage.page_number(request.args.get("credits")))
    return render_template(
        "renter/billing.html", standing=usage.standing(current_user), records=records,
        credits=credits, task=task, total_charged=usage.total_charged(current_user))


def _csv_cells(row, currency):
    return [row.id, row.at.strftime("%Y-%m-%d %H:%M:%S"), row.kind,
            decimal_number(row.amount), decimal_number(row.balance_after), currency,
            row.task_id, row.task_name, row.replica_id, row.spec_name, row.node_name,
            None if row.price_per_hour is None else decimal_number(row.price_per_hour),
            row.seconds_from, row.seconds_to, row.note, row.actor_name]


@bp.get("/billing/records.csv")
def billing_csv():
    """Every ledger row of the caller, newest first, streamed a batch at a time."""
    user, currency = current_user._get_current_object(), setting("currency")

    def rows():
        before = None
        while True:
            batch = usage.ledger_rows(user, before_id=before, limit=CSV_BATCH)
            yield from (_csv_cells(row, currency) for row in batch)
            if len(batch) < CSV_BATCH:
                return
            before = batch[-1].id

    name = f"machine-time-{user.name}-{datetime.now(UTC):%Y%m%d}.csv"
    return Response(stream_with_context(csv_rows(CSV_HEADER, rows())),
                    mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff"})
