"""The renter's overview page: machine-time, and the pools and specs they may use."""

from flask import render_template
from flask_login import current_user

from portal import usage
from portal.access import open_pools, open_specs
from portal.renter.blueprint import bp


@bp.get("/")
def overview():
    """The renter's machine-time (balance, spend, runway, a low-balance warning, tasks
    stopped for an exhausted balance), and the pools and specs they may use with prices in
    the miner's currency."""
    pools = open_pools(current_user)
    return render_template(
        "renter/overview.html", pools=pools, specs=open_specs(current_user, pools),
        standing=usage.standing(current_user), stops=usage.balance_stops(current_user))
