"""The ledger: the only code that writes money. Everything else asks it.

A renter's money moves only as a ``LedgerEntry`` row, and the cached
``User.balance`` changes in the same transaction as its row. Amounts are
integer micro-units (``portal.money``).

A replica costs ``cost(billed_seconds(start, end), price_per_hour)``: its
container's own StartedAt to FinishedAt in whole seconds rounded up, times the
price per machine-hour snapshot taken when it was placed, rounded up to the
micro-unit. ``meter`` charges each replica that total *so far* minus what it
was charged already, so however many ticks, restarts or crashes it took, the
rows of a replica add up to exactly its cost; one replica never has two rows
ending at the same second (a unique index), so nothing is charged twice. Beside the rows,
in their transaction, it keeps what each renter was charged per month (``UsageMonth``) and
what charges earned per day and per month, node and spec (``EarningDay``,
``EarningMonth``), so pages never sum the ledger.
"""

from datetime import datetime

import click
from flask_babel import gettext as _
from peewee import EXCLUDED, ValuesList, fn

from portal import settings, values
from portal.db import Prepared, database
from portal.models import (
    REPLICA_ENDED,
    EarningDay,
    EarningMonth,
    LedgerEntry,
    Replica,
    Subtask,
    Task,
    UsageMonth,
    User,
    utcnow,
)
from portal.money import MAX_MICRO, AmountError, format_amount, parse_amount

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1)
BATCH = 500  # replicas charged per transaction by ``meter``
NOTE_MAX = 512  # a recharge's note, a correction's reason


class LedgerError(ValueError):
    """A movement the ledger refuses; the message says why, in the reader's language."""


def month_start(now=None):
    """The first instant of this month (UTC): where "used this month" begins."""
    return (now or utcnow()).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def billed_seconds(started_ns, end_ns):
    """Whole seconds from ``started_ns`` to ``end_ns``, rounded up; never negative."""
    return max(0, -(-(end_ns - started_ns) // NS))


def cost(seconds, price_per_hour):
    """Micro-units for ``seconds`` of machine-time at ``price_per_hour``, rounded up."""
    return -(-seconds * price_per_hour // 3600)


def to_ns(moment):
    """A naive UTC datetime (``utcnow()``) as nanoseconds since the epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def _move(user_id, amount, **row):
    """Apply ``amount`` to the user's balance and write its row; call inside a transaction.
    The UPDATE locks the user's row (PostgreSQL) or the database (SQLite's IMMEDIATE
    transactions) until commit, so the balance read back is this row's own."""
    User.update(balance=User.balance + amount).where(User.id == user_id).execute()
    balance = User.select(User.balance).where(User.id == user_id).scalar()
    return LedgerEntry.create(user=user_id, amount=amount, balance_after=balance, **row)


def _renter(user):
    if user.role != "renter":
        raise LedgerError(_("Only renters have machine-time; %(name)s is a miner.",
                            name=user.name))


def _within_range(user_id, amount):
    balance = User.select(User.balance).where(User.id == user_id).scalar()
    if not -MAX_MICRO <= balance + amount <= MAX_MICRO:
        raise LedgerError(_("That would take the balance beyond what can be stored."))


def _note(text):
    """A recharge's note or a correction's reason (``portal.values.text``); LedgerError."""
    try:
        return values.text(text, NOTE_MAX)
    except values.ValueProblem as exc:
        raise LedgerError(str(exc)) from None


def recharge(renter, amount, actor, note=""):
    """Credit ``renter`` with ``amount`` (> 0) micro-units; the new LedgerEntry."""
    _renter(renter)
    if not isinstance(amount, int) or amount <= 0:
        raise LedgerError(_("The amount must be greater than zero."))
    note = _note(note)
    with database.atomic():
        _within_range(renter.id, amount)
        return _move(renter.id, amount, kind="recharge", actor=actor, note=note)


def adjust(renter, amount, actor, reason, kind="adjust"):
    """A miner's correction with a required ``reason``: ``adjust`` (either sign, not zero)
    or ``refund`` (> 0)."""
    _renter(renter)
    reason = _note(reason)
    if kind not in ("adjust", "refund"):
        raise ValueError(kind)
    if not reason:
        raise LedgerError(_("Say why: a reason is required."))
    if not isinstance(amount, int) or amount == 0 or (kind == "refund" and amount < 0):
        raise LedgerError(_("The amount must not be zero.") if kind == "adjust"
                          else _("The amount must be greater than zero."))
    with database.atomic():
        _within_range(renter.id, amount)
        return _move(renter.id, amount, kind=kind, actor=actor, note=reason)


def replica_end_ns(replica):
    """Where ``replica``'s billed time ends now: FinishedAt once it has ended (for a lost one,
    when it was last seen alive), else when it was last seen running; None before it
    started."""
    if replica.started_ns is None:
        return None
    if replica.finished_ns is not None:
        return replica.finished_ns
    if replica.last_seen_at is not None:
        return max(replica.started_ns, to_ns(replica.last_seen_at))
    return replica.started_ns


def meter():
    """Charge every replica what it owes up to now (see the module's docstring); returns
    the number of charges written. The scheduler's leader calls it on each tick.

    A running replica is charged up to when it was last seen running (so no
    more than it will finally cost); an ended one up to its end, and is then
    settled; settling gives back anything charged past the end. Replicas are
    charged in batches of ``BATCH``, each batch one transaction with its rows
    and the balances they change.
    """
    written, after = 0, 0
    while True:
        with database.atomic():
            query = (Replica.select(Replica, Subtask.id, Subtask.spec, Task.id, Task.user)
                     .join(Subtask).switch(Replica).join(Task)
                     .where((Replica.id > after) & ~Replica.settled
                            & (Replica.state.in_(("running", *REPLICA_ENDED))))
                     .order_by(Replica.id).limit(BATCH))
            if database.for_update:
                query = query.for_update(of=Replica)
            replicas = list(query)
            if not replicas:
                return written
            written += _charge(replicas)
            after = replicas[-1].id


def _charge(replicas):
    """Write the charges of ``replicas`` (inside meter's transaction)."""
    rows, settled, updates = [], [], []
    for replica in replicas:
        end = replica_end_ns(replica)
        final = replica.state in REPLICA_ENDED
        if end is None or replica.price_per_hour is None:
            if final:
                settled.append(replica.id)
            continue
        seconds = billed_seconds(replica.started_ns, end)
        total = cost(seconds, replica.price_per_hour)
        amount = total - replica.charged
        if seconds > replica.billed_seconds or (final and amount < 0):
            # amount < 0: charged past the container's end (a database from before "last
            # seen running" was stamped before the engine was asked): settling gives it back
            rows.append((replica, seconds, amount))
        elif final:
            settled.append(replica.id)
            continue
        else:
            continue
        updates.append((replica.id, seconds, total, final))
    if settled:
        Replica.update(settled=True).where(Replica.id.in_(settled)).execute()
    if not rows:
        return 0
    users = {}
    for replica, _seconds, amount in rows:
        user = replica.task.user_id
        users[user] = users.get(user, 0) + amount
    now = utcnow()
    month = month_start(now).date()
    for user, delta in users.items():
        User.update(balance=User.balance - delta).where(User.id == user).execute()
        UsageMonth.insert(user=user, month=month, charged=delta).on_conflict(
            conflict_target=[UsageMonth.user, UsageMonth.month],
            update={UsageMonth.charged: UsageMonth.charged + EXCLUDED.charged}).execute()
    balances = dict(User.select(User.id, User.balance).where(User.id.in_(list(users))).tuples())
    # Each user's rows in order, their balance_after counting down to the balance stored.
    running = {user: balances[user] + delta for user, delta in users.items()}
    entries = []
    for replica, seconds, amount in rows:
        user = replica.task.user_id
        running[user] -= amount
        # A give-back covers no new second: it has no seconds_to, which is unique per replica.
        back = seconds < replica.billed_seconds
        entries.append((user, "charge", -amount, running[user], now,
                        f"gave back {replica.billed_seconds - seconds} s charged past the "
                        f"container's end" if back else "", replica.id,
                        replica.task_id, replica.subtask.spec_id, replica.node_id,
                        replica.price_per_hour, replica.billed_seconds, None if back else seconds))
    _insert_charges(entries)
    # After the rows: they lock their node first, as removing a node does before it folds
    # the node's earnings (``forget_node``), so the two cannot deadlock on PostgreSQL.
    _earned(now.date(), rows)
    # One UPDATE ... FROM (VALUES ...) for the whole batch (SQLite >= 3.33, PostgreSQL); both
    # name the columns of a VALUES list column1, column2, ...
    batch = ValuesList(updates, alias="v")
    Replica.update(billed_seconds=batch.c.column2, charged=batch.c.column3,
                   settled=batch.c.column4).from_(batch).where(
        Replica.id == batch.c.column1).execute()
    return len(entries)


def _earned(day, rows):
    """Add the charges ``rows`` (replica, seconds, amount) make on ``day`` to the earnings of
    their node and spec (0: none) that day and that month, one upsert per table for the
    batch, keys in order (PostgreSQL takes their row locks in that order, so two writers
    cannot deadlock)."""
    earned = {}
    for replica, _seconds, amount in rows:
        key = (replica.node_id or 0, replica.subtask.spec_id or 0)
        earned[key] = earned.get(key, 0) + amount
    for model, when in ((EarningDay, day), (EarningMonth, day.replace(day=1))):
        _add_earnings(model, [(when, node, spec, amount)
                              for (node, spec), amount in sorted(earned.items())])


def _add_earnings(model, rows):
    """Upsert ``rows`` (day or month, node, spec, charged) into ``model`` (``EarningDay`` or
    ``EarningMonth``), adding to what is there."""
    when = model.day if model is EarningDay else model.month
    model.insert_many(rows, fields=[when, model.node, model.spec, model.charged]).on_conflict(
        conflict_target=[when, model.node, model.spec],
        update={model.charged: model.charged + EXCLUDED.charged}).execute()


def forget_node(node_id):
    """Fold a node's daily and monthly earnings into those of no node (0), as its ledger rows
    let go of it (SET NULL): SQLite may give the next node added the id of the last one
    removed. Call in the transaction that deletes the node."""
    for model in (EarningDay, EarningMonth):
        when = model.day if model is EarningDay else model.month
        rows = list(model.select(when, model.spec, model.charged)
                    .where(model.node == node_id).tuples())
        if rows:
            model.delete().where(model.node == node_id).execute()
            _add_earnings(model, [(at, 0, spec, charged) for at, spec, charged in sorted(rows)])


CHARGE_COLUMNS = (LedgerEntry.user, LedgerEntry.kind, LedgerEntry.amount,
                  LedgerEntry.balance_after, LedgerEntry.at, LedgerEntry.note,
                  LedgerEntry.replica, LedgerEntry.task, LedgerEntry.spec, LedgerEntry.node,
                  LedgerEntry.price_per_hour, LedgerEntry.seconds_from, LedgerEntry.seconds_to)


def _insert_charges(entries):
    """Insert charge rows (tuples in ``CHARGE_COLUMNS`` order) with one prepared statement:
    peewee's insert_many spends most of a 1,000-replica tick writing out the SQL text."""
    if not entries:
        return
    columns = ", ".join(f'"{field.column_name}"' for field in CHARGE_COLUMNS)
    marks = ", ".join([database.param] * len(CHARGE_COLUMNS))
    database.cursor().executemany(
        f'INSERT INTO "{LedgerEntry._meta.table_name}" ({columns}) VALUES ({marks})', entries)


def minimum_for(per_hour, minutes=None):
    """Micro-units a renter needs to start work costing ``per_hour`` (all its replicas):
    the miner's minimum period (``min_start_minutes``) of it, rounded up. ``minutes``: that
    setting, when the caller has read it already (once for many tasks)."""
    if minutes is None:
        minutes = settings.get("min_start_minutes")
    return -(-per_hour * int(minutes) // 60)


_BALANCE = Prepared(lambda user_id: User.select(User.balance).where(User.id == user_id))


def start_refusal(user, needed):
    """The sentence refusing a start that needs ``needed`` micro-units, or None when the
    user's balance covers it (read now, not from ``user``)."""
    balance = _BALANCE.rows(user.id)[0][0]
    if balance >= needed:
        return None
    currency = settings.get("currency")
    return _("Your balance (%(balance)s %(currency)s) does not cover %(minutes)s minutes of "
             "this task (%(needed)s %(currency)s). Ask your miner to recharge your account.",
             balance=format_amount(balance), needed=format_amount(needed), currency=currency,
             minutes=settings.get("min_start_minutes"))


def verify():
    """Every difference between the ledger and what it should say, as sentences (English,
    for the CLI); empty when the books are right.

    Each user's balance must equal the sum of their rows and their last row's
    ``balance_after``, their monthly totals the sum of their charges, and the daily earnings
    of each spec the sum of its charges; each settled replica's rows must add up to its cost
    from its container times and price snapshot.
    """
    problems = []
    sums = dict(LedgerEntry.select(LedgerEntry.user, fn.SUM(LedgerEntry.amount))
                .group_by(LedgerEntry.user).tuples())
    newest = LedgerEntry.select(fn.MAX(LedgerEntry.id)).group_by(LedgerEntry.user)
    lasts = dict(LedgerEntry.select(LedgerEntry.user, LedgerEntry.balance_after)
                 .where(LedgerEntry.id.in_(newest)).tuples())
    for user_id, name, balance in User.select(User.id, User.name, User.balance).tuples():
        total = int(sums.get(user_id) or 0)
        if total != balance:
            problems.append(f"user {name}: balance {balance} but the ledger adds up to {total}")
        last = lasts.get(user_id)
        if last is not None and last != balance:
            problems.append(f"user {name}: balance {balance} but the last row says {last}")
    charges = dict(LedgerEntry.select(LedgerEntry.user, fn.SUM(LedgerEntry.amount))
                   .where(LedgerEntry.kind == "charge").group_by(LedgerEntry.user).tuples())
    months = dict(UsageMonth.select(UsageMonth.user, fn.SUM(UsageMonth.charged))
                  .group_by(UsageMonth.user).tuples())
    for user_id in set(charges) | set(months):
        if -int(charges.get(user_id) or 0) != int(months.get(user_id) or 0):
            problems.append(f"user {user_id}: monthly totals say {months.get(user_id) or 0} "
                            f"charged but the ledger says {-int(charges.get(user_id) or 0)}")
    by_spec = dict(LedgerEntry.select(LedgerEntry.spec, fn.SUM(LedgerEntry.amount))
                   .where(LedgerEntry.kind == "charge").group_by(LedgerEntry.spec).tuples())
    for model, kind in ((EarningDay, "daily"), (EarningMonth, "monthly")):
        earned = dict(model.select(model.spec, fn.SUM(model.charged)).group_by(model.spec)
                      .tuples())
        for spec in {spec or 0 for spec in by_spec} | set(earned):
            got, expected = int(earned.get(spec) or 0), -int(by_spec.get(spec or None) or 0)
            if got != expected:
                problems.append(f"spec {spec}: {kind} earnings say {got} charged but the "
                                f"ledger says {expected}")
    charged = dict(LedgerEntry.select(LedgerEntry.replica, fn.SUM(LedgerEntry.amount))
                   .where(LedgerEntry.replica.is_null(False)).group_by(LedgerEntry.replica)
                   .tuples())
    for replica in Replica.select().where(Replica.settled):
        end = replica_end_ns(replica)
        expected = (0 if end is None or replica.price_per_hour is None
                    else cost(billed_seconds(replica.started_ns, end), replica.price_per_hour))
        got = -int(charged.get(replica.id) or 0)
        if got != expected or replica.charged != expected:
            problems.append(f"replica {replica.id}: charged {got} (cached {replica.charged}) "
                            f"but its run costs {expected}")
    return problems


@click.group("billing", help="Machine-time and money.")
def billing_cli():
    pass


@billing_cli.command("verify")
def verify_command():
    """Recompute every balance and every settled replica's charges; exit 1 on a difference."""
    problems = verify()
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    click.echo("The ledger is consistent.")


@billing_cli.command("recharge")
@click.argument("name")
@click.argument("amount")
@click.option("--note", default="", help="Shown on the renter's recharge records.")
def recharge_command(name, amount, note):
    """Credit renter NAME with AMOUNT (e.g. 100 or 12.5) of the miner's currency."""
    user = User.get_or_none(User.name == name)
    if user is None:
        raise click.ClickException(f"no user named {name}")
    try:
        entry = recharge(user, parse_amount(amount, allow_zero=False), None, note)
    except (AmountError, LedgerError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{name}: balance {format_amount(entry.balance_after)} {settings.get('currency')}")


def init_app(app):
    app.cli.add_command(billing_cli)
