"""The renter's area: only renters get in (see ``auth.require_role``)."""

from flask import Blueprint, render_template
from flask_login import current_user

from portal import usage
from portal.access import open_pools, open_specs
from portal.auth import require_role
from portal.pages import RENTER_PAGES, Area

bp = Blueprint("renter", __name__, url_prefix="/renter")
bp.before_request(require_role("renter"))
area = Area(bp, RENTER_PAGES)


@bp.get("/")
def overview():
    """The renter's machine-time (balance, spend, runway, a low-balance warning, tasks
    stopped for an exhausted balance), and the pools and specs they may use with prices in
    the miner's currency."""
    pools = open_pools(current_user)
    return render_template(
        "renter/overview.html", pools=pools, specs=open_specs(current_user, pools),
        standing=usage.standing(current_user), stops=usage.balance_stops(current_user))


# These modules register their routes on bp.
from portal.renter import billing, console, notebooks, replicas, tasks  # noqa: E402,F401

area.register_placeholder()
