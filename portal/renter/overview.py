"""The renter's overview page: their tasks and notebooks per state, machine-time (balance,
spend, runway, latest runs and recharges, what runs now and its cost, spend per day),
quick-create buttons, and the pools and specs they may use."""

from flask import render_template, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from portal import overview as read
from portal import usage
from portal.access import open_pools, open_specs
from portal.presenters import partial_requested
from portal.renter.blueprint import area, bp

# Quick-create buttons: (page, label); each page's form has id="new".
CREATE = [("notebooks", _l("Notebook")), ("tasks", _l("Training task")),
          ("templates", _l("Template")), ("algorithms", _l("Algorithm")),
          ("datasets", _l("Dataset")), ("images", _l("Image"))]


def _create_url(page):
    """Where a quick-create button of ``page`` leads: the new notebook and new task forms,
    a built page's form (``#new``), or a page not built yet (its placeholder)."""
    if page == "notebooks":
        return url_for("renter.new_notebook")
    if page == "tasks":
        return url_for("renter.new_task")
    if page in area.planned:
        return url_for(area.endpoint(page), page=page)
    return url_for(area.endpoint(page), _anchor="new")


@bp.get("/")
def overview():
    """The renter's home: counts, machine-time, running work, the spend chart, quick-create
    buttons, and the pools and specs they may use with prices in the miner's currency. Its
    running part polls for itself alone (``partial_requested``)."""
    if partial_requested():
        return render_template("renter/_overview_running.html",
                               running=read.running(current_user))
    pools = open_pools(current_user)
    days = read.spend_per_day(current_user)
    return render_template(
        "renter/overview.html", pools=pools, specs=open_specs(current_user, pools),
        standing=usage.standing(current_user), stops=usage.balance_stops(current_user),
        task_counts=read.task_counts(current_user),
        notebook_counts=read.notebook_counts(current_user),
        runs=read.latest_runs(current_user), running=read.running(current_user),
        recharges=read.latest_credits(current_user),
        days=days, chart=[[day.isoformat() for day, _m in days], [m for _d, m in days]],
        creates=[(page, label, _create_url(page)) for page, label in CREATE])
