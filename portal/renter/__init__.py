"""The renter's area: only renters get in (see ``auth.require_role``)."""

from flask import Blueprint, render_template

from portal.auth import require_role
from portal.pages import RENTER_MENU, RENTER_PLANNED, Area

bp = Blueprint("renter", __name__, url_prefix="/renter")
bp.before_request(require_role("renter"))
area = Area(bp, RENTER_MENU, RENTER_PLANNED)


@bp.get("/")
def overview():
    return render_template("renter/overview.html")


area.register_placeholder()
