"""The renter's area: only renters get in (see ``auth.require_role``)."""

from flask import Blueprint, render_template
from flask_login import current_user

from portal import resources
from portal.auth import require_role
from portal.pages import RENTER_MENU, RENTER_PLANNED, Area

bp = Blueprint("renter", __name__, url_prefix="/renter")
bp.before_request(require_role("renter"))
area = Area(bp, RENTER_MENU, RENTER_PLANNED)


@bp.get("/")
def overview():
    """The pools and specs this renter may use, with prices in the miner's currency."""
    pools = resources.open_pools(current_user)
    return render_template(
        "renter/overview.html", pools=pools, specs=resources.open_specs(current_user, pools))


# These modules register their routes on bp.
from portal.renter import console, replicas, tasks  # noqa: E402,F401

area.register_placeholder()
