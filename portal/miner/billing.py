"""The miner's Machine-time pages: renters' balances, recharges and corrections, the ledger's
records (filtered, paged, as CSV), earnings per node and spec, and the billing settings.

Money moves only through ``portal.ledger`` (``recharge``, ``adjust``); reading the
ledger goes through ``portal.records``. Amounts are typed as decimals ("12.5", "-3")
and read exactly (``portal.money``); a refused value writes nothing and is shown
next to its field, with the page answered 400.
"""

from flask import Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import Length

from portal import ledger, record_groups, records, settings, values
from portal.csv_export import csv_rows
from portal.miner.blueprint import bp, get_or_404
from portal.models import User, utcnow
from portal.money import (
    AmountError,
    decimal_number,
    format_amount,
    parse_amount,
    parse_signed_amount,
)
from portal.presenters import answer

MAX_MINUTES = 43_200  # 30 days: the most either minutes setting may say
MAX_CURRENCY = 16
RECENT = 5  # ledger rows of the chosen renter shown under their forms
CSV_HEADER = ["id", "at_utc", "renter", "kind", "amount", "balance_after", "currency", "actor",
              "note", "task_id", "task", "replica_id", "spec", "node", "price_per_hour",
              "seconds_from", "seconds_to"]
CSV_CHUNK = 64 * 1024  # characters sent at once while an export streams
NOTE = _l("At most %(num)d characters.", num=512)


class _Form(FlaskForm):
    """A form of these pages; CSRFProtect checks the token of every POST (``csrf()``)."""

    class Meta:
        csrf = False


class RechargeForm(_Form):
    amount = StringField(_l("Amount"), render_kw={"inputmode": "decimal", "autocomplete": "off"})
    note = StringField(_l("Note (the renter sees it on their records)"),
                       validators=[Length(max=512, message=NOTE)])


class AdjustForm(_Form):
    amount = StringField(_l("Amount (negative takes money off)"),
                         render_kw={"autocomplete": "off"})
    kind = SelectField(_l("Kind"), choices=[SelectChoice("adjust", _l("Adjustment")),
                                            SelectChoice("refund", _l("Refund"))],
                       validate_choice=False)
    reason = StringField(_l("Reason (required; the renter sees it)"),
                         validators=[Length(max=512, message=NOTE)])


class SettingsForm(_Form):
    currency = StringField(_l("Currency label"))
    min_start_minutes = StringField(_l("A start needs a balance for this many minutes of the "
                                       "task"), render_kw={"inputmode": "numeric"})
    low_balance_minutes = StringField(_l("Warn a renter when their balance lasts less than "
                                         "this many minutes"), render_kw={"inputmode": "numeric"})


def _money_forms(recharge=None, adjust=None):
    recharge = recharge or RechargeForm(formdata=None, prefix="recharge")
    adjust = adjust or AdjustForm(formdata=None, prefix="adjust")
    currency = settings.get("currency")
    recharge.amount.label.text = _("Amount (%(currency)s)", currency=currency)
    adjust.amount.label.text = _("Amount (%(currency)s; negative takes money off)",
                                 currency=currency)
    return recharge, adjust


def _settings_form():
    return SettingsForm(formdata=None, prefix="settings", data={
        key: settings.get(key) for key in ("currency", "min_start_minutes",
                                           "low_balance_minutes")})


def _page(selected=None, recharge=None, adjust=None, settings_form=None, status=200):
    recharge, adjust = _money_forms(recharge, adjust)
    recent = []
    if selected is not None:
        recent = record_groups.page(records.Filters(user=selected.id), size=RECENT).rows
    return answer("miner/machine_time.html", status,
                  push=url_for("miner.machine_time", renter=selected.id if selected else None),
                  renters=records.renter_summaries(), selected=selected, recent=recent,
                  recharge=recharge, adjust=adjust,
                  settings_form=settings_form or _settings_form(),
                  kind_names=records.KIND_NAMES)


@bp.get("/machine-time")
def machine_time():
    chosen = request.args.get("renter")
    selected = None
    if chosen:
        selected = get_or_404(User, records.parse_id(chosen) or 0)
        if selected.role != "renter":
            abort(404)
    return _page(selected)


def _facts(user, entry):
    """What a success message says about ``entry``: name, amount, balance, currency."""
    return {"name": user.name, "amount": format_amount(entry.amount),
            "balance": format_amount(entry.balance_after), "currency": settings.get("currency")}


def _done(user):
    return redirect(url_for("miner.machine_time", renter=user.id), 303)


@bp.post("/machine-time/<int:user_id>/recharge")
def recharge_view(user_id):
    user = get_or_404(User, user_id)
    form = RechargeForm(prefix="recharge")
    if form.validate():
        try:
            amount = parse_amount(form.amount.data, allow_zero=False)
            entry = ledger.recharge(user, amount, current_user.id, form.note.data or "")
        except AmountError as exc:
            form.amount.errors.append(str(exc))
        except ledger.LedgerError as exc:
            form.form_errors.append(str(exc))
        else:
            flash(_("Recharged %(name)s with %(amount)s %(currency)s; their balance is "
                    "%(balance)s %(currency)s.", **_facts(user, entry)), "success")
            return _done(user)
    return _page(user, recharge=form, status=400)


@bp.post("/machine-time/<int:user_id>/adjust")
def adjust_view(user_id):
    user = get_or_404(User, user_id)
    form = AdjustForm(prefix="adjust")
    if form.validate():
        amount = None
        if form.kind.data not in ("adjust", "refund"):
            form.kind.errors.append(_("Choose an adjustment or a refund."))
        if not (form.reason.data or "").strip():
            form.reason.errors.append(_("Say why: a reason is required."))
        try:
            amount = parse_signed_amount(form.amount.data)
        except AmountError as exc:
            form.amount.errors.append(str(exc))
        if not form.errors:
            try:
                entry = ledger.adjust(user, amount, current_user.id, form.reason.data,
                                      form.kind.data)
            except ledger.LedgerError as exc:
                form.form_errors.append(str(exc))
            else:
                facts = _facts(user, entry)
                flash(_("Refunded %(amount)s %(currency)s to %(name)s; their balance is "
                        "%(balance)s %(currency)s.", **facts) if entry.kind == "refund" else
                      _("Adjusted the balance of %(name)s by %(amount)s %(currency)s; it is "
                        "%(balance)s %(currency)s.", **facts), "success")
                return _done(user)
    return _page(user, adjust=form, status=400)


def _minutes(field):
    try:
        return str(values.whole_number(field.data, 0, MAX_MINUTES))
    except values.ValueProblem:
        field.errors.append(_("Enter whole minutes from 0 to %(most)d.", most=MAX_MINUTES))
        return None


@bp.post("/machine-time/settings")
def billing_settings_view():
    form = SettingsForm(prefix="settings")
    if form.validate():
        try:
            currency = values.name(form.currency.data, MAX_CURRENCY)
        except values.ValueProblem:
            currency = None
            form.currency.errors.append(_("Enter a label of 1 to %(most)d characters, such as "
                                          "UNC.", most=MAX_CURRENCY))
        chosen = {"currency": currency, "min_start_minutes": _minutes(form.min_start_minutes),
                  "low_balance_minutes": _minutes(form.low_balance_minutes)}
        if not form.errors:
            for key, value in chosen.items():
                settings.put(key, value)
            flash(_("Billing settings saved."), "success")
            return redirect(url_for("miner.machine_time"), 303)
    return _page(settings_form=form, status=400)


# --- records ---------------------------------------------------------------------------------


@bp.get("/machine-time/records")
def ledger_records():
    errors = {}
    try:
        filters = records.parse_filters(request.args)
    except records.FilterError as exc:
        filters, errors = records.Filters(), exc.errors
    # A replica's charges are one row, unless they are what is asked for ("Each charge").
    pages = records.page if filters.replica else record_groups.page
    found = records.Page([]) if errors else pages(
        filters, records.parse_id(request.args.get("before")),
        records.parse_id(request.args.get("after")))
    return answer("miner/machine_time_records.html", 400 if errors else 200,
                  page=found, rows=found.rows, filters=filters, errors=errors, typed=request.args,
                  renters=User.select(User.id, User.name).where(User.role == "renter")
                  .order_by(User.name),
                  kind_names=records.KIND_NAMES)


def _csv_line(row, currency):
    price = row["price_per_hour"]
    return [row["id"], row["at"].strftime("%Y-%m-%d %H:%M:%S"), row["user"], row["kind"],
            decimal_number(row["amount"]), decimal_number(row["balance_after"]),
            currency, row["actor"], row["note"], row["task_id"], row["task"], row["replica_id"],
            row["spec"], row["node"], None if price is None else decimal_number(price),
            row["seconds_from"], row["seconds_to"]]


def _chunks(lines):
    """Join CSV lines into chunks of about ``CSV_CHUNK`` characters (fewer, larger writes)."""
    parts, size = [], 0
    for line in lines:
        parts.append(line)
        size += len(line)
        if size >= CSV_CHUNK:
            yield "".join(parts)
            parts, size = [], 0
    if parts:
        yield "".join(parts)


@bp.get("/machine-time/records.csv")
def ledger_records_csv():
    """The rows the Records page's filters match, all of them, streamed as CSV."""
    try:
        filters = records.parse_filters(request.args)
    except records.FilterError as exc:
        return Response(str(exc), 400, mimetype="text/plain")
    currency = settings.get("currency")
    lines = csv_rows(CSV_HEADER, (_csv_line(row, currency) for row in records.each(filters)))
    name = f"hourglass-ledger-{utcnow().date().isoformat()}.csv"
    return Response(stream_with_context(_chunks(lines)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/machine-time/earnings")
def earnings():
    by_node, by_spec = records.earnings()
    total = records.Earning(None, sum(e.this_month for e in by_spec),
                            sum(e.all_time for e in by_spec))
    return answer("miner/machine_time_earnings.html", by_node=by_node, by_spec=by_spec,
                  total=total, month=records.month_start())
