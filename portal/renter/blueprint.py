"""The renter's blueprint under ``/renter`` (only renters get in, see
``auth.require_role``) and its menu (``area``)."""

from flask import Blueprint

from portal.auth import require_role
from portal.pages import RENTER_PAGES, Area

bp = Blueprint("renter", __name__, url_prefix="/renter")
bp.before_request(require_role("renter"))
area = Area(bp, RENTER_PAGES)
