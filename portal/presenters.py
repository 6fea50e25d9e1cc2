"""What every page does around the domain's calls: the text formats templates use
(registered once for the app, ``init_app``), how a page answers (``answer``,
``page_or_partial``; ``form_post``, ``button_post`` and ``done`` for what is posted), a
refused form's messages next to their fields (``show_errors``) and the pool and spec choices
of the renter's launch forms (``launch_choices``).

The htmx convention: a view answers its ``_partial.html`` when htmx asks for a part of the
page (``partial_requested``: a poll or a live field, not a boosted link, form or history
restore), else the whole page that includes it; polling (``hx-trigger="every Ns"``) swaps
that partial only. A form post answered with a whole page (a refused form) tells htmx the
page's own address (``answer``'s ``push``).
"""

from datetime import UTC, datetime

from flask import flash, make_response, redirect, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from portal import files
from portal.access import open_pools
from portal.money import format_amount, rounded_amount
from portal.pools import pool_views
from portal.settings import get as setting
from portal.specs import spec_views
from portal.task_input import pool_images, usable_specs
from portal.task_views import reason_text
from portal.units import format_cores, format_gb
from portal.usage import runway_text
from portal.values import FieldErrors


def ns_text(ns):
    """Podman's nanosecond time as ``YYYY-MM-DD HH:MM:SS`` UTC, or a dash."""
    if ns is None:
        return "—"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration_text(seconds):
    """``3725`` -> ``1:02:05`` (hours:minutes:seconds)."""
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def money_html(micro):
    """An amount as pages show it: two decimals (``money.rounded_amount``), with the exact
    amount on hover where the two decimals are not exact:
    ``<span class="money" title="0.373333">0.37</span>``. The API and CSV stay exact."""
    shown, exact = rounded_amount(micro), format_amount(micro)
    if shown == exact:
        return Markup.escape(shown)
    return Markup('<span class="money" title="{}">{}</span>').format(exact, shown)


def init_app(app):
    """What every template may call: ``money`` (micro-units, ``money_html``), ``cores``
    (millicores), ``gb`` (MiB), ``size_text`` (bytes), ``ns_text``, ``duration_text``,
    ``runway_text`` (minutes) and ``reason_text`` (a stored reason in the reader's
    language)."""
    app.jinja_env.globals.update(
        money=money_html, cores=format_cores, gb=format_gb, size_text=files.size_text,
        ns_text=ns_text, duration_text=duration_text, runway_text=runway_text,
        reason_text=reason_text)


def partial_requested():
    """Whether htmx asks for a part of the page (a poll, a live field): an htmx request that
    is neither a boosted link or form (``hx-boost``) nor a restore of htmx's history, both of
    which want the whole page."""
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def page_or_partial(page, partial, **context):
    """Render ``partial`` when htmx asks for that part (``partial_requested``), else ``page``,
    which includes it."""
    return render_template(partial if partial_requested() else page, **context)


def answer(template, status=200, push=None, **context):
    """Render a page; a POST answered with a page tells htmx its real address (``push``), not
    the action's, which answers only POST."""
    headers = {"HX-Push-Url": push} if request.method == "POST" and push else {}
    return render_template(template, **context), status, headers


def done(message, url):
    """How a post that worked answers: ``message`` flashed (success), the browser sent to
    ``url`` (303)."""
    flash(message, "success")
    return redirect(url, 303)


def form_post(make_form, change, answer_done, refused):
    """Answer a page's form: the posted form (``make_form()``, a form class or a function
    that builds one), then ``answer_done(change(form))`` when it passes its own checks and the
    rules take the change; else ``refused(form)``, the page again, answered with status 400,
    each message next to its field (``show_errors``)."""
    form = make_form()
    if form.validate():
        try:
            result = change(form)
        except FieldErrors as exc:
            show_errors(form, exc)
        else:
            return answer_done(result)
    response = make_response(refused(form))
    response.status_code = 400
    return response


def button_post(change, answer_done, refused, errors=FieldErrors):
    """Answer a page's button (Delete, Stop...): ``answer_done(change())``; when the rules
    refuse it (``errors``), its message is flashed and ``refused()`` answers."""
    try:
        result = change()
    except errors as exc:
        flash(str(exc), "error")
        return refused()
    return answer_done(result)


def show_errors(form, exc, fields=None):
    """Put the messages of ``exc`` (``values.FieldErrors``) next to their fields of ``form``;
    the rest above the form (``form.form_errors``). ``fields`` maps the error's keys to the
    form's fields where they are not the fields' own names (``argv``: the command box);
    without it each key is the name of a field of ``form``."""
    if fields is None:
        fields = {field.short_name: field for field in form}
    for key, message in exc.errors.items():
        if key in fields:
            fields[key].errors = [*fields[key].errors, message]
        else:
            form.form_errors.append(message)


def launch_choices(form, *spec_fields):
    """Fill a renter's task or notebook form: ``form.pool`` with the pools open to them and
    each select of ``spec_fields`` with the specs they may use there, priced per
    machine-hour in the miner's currency. Returns the open pools (``PoolView``) and the image
    suggestions of the pool chosen (or of the first)."""
    specs = spec_views()
    pools = open_pools(current_user, pool_views(specs=specs))
    currency = setting("currency")
    usable = usable_specs(pools, specs)
    form.pool.choices = [_pool_choice(view, usable) for view in pools]
    choices = [("", _("— choose a spec —"))] + [
        (view.spec.name, _("%(spec)s · %(price)s %(currency)s per machine-hour",
                           spec=view.spec.name, price=format_amount(view.spec.price_per_hour),
                           currency=currency))
        for view in usable]
    for field in spec_fields:
        field.choices = choices
    runnable = [view for view in pools if _runs(view, usable)]
    if form.pool.data not in {view.pool.name for view in runnable} and not form.is_submitted():
        form.pool.data = runnable[0].pool.name if runnable else None
    chosen = next((v for v in pools if v.pool.name == form.pool.data), pools[0] if pools else None)
    return pools, pool_images(chosen) if chosen else []


def _runs(pool_view, usable):
    """The names of the ``usable`` specs a Ready node of the pool can hold now."""
    names = {view.spec.name for view in usable}
    return [view.spec.name for view in pool_view.specs if view.spec.name in names]


def _pool_choice(pool_view, usable):
    """A pool's option: the specs it can run, or disabled with why it runs none."""
    name, runs = pool_view.pool.name, _runs(pool_view, usable)
    if runs and pool_view.pool.slurm_cluster_id:
        return (name, _("%(pool)s · Slurm partition %(partition)s · runs %(specs)s", pool=name,
                        partition=pool_view.pool.partition, specs=", ".join(runs)))
    if runs:
        return (name, _("%(pool)s · runs %(specs)s", pool=name, specs=", ".join(runs)))
    if not any(item.schedulable for item in pool_view.nodes):
        why = _("%(pool)s · cannot run now: no Ready node", pool=name)
    else:
        why = _("%(pool)s · cannot run now: no Ready node fits a spec you may use", pool=name)
    return (name, why, {"disabled": True})
