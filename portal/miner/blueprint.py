"""The miner's blueprint under ``/miner`` (only miners get in, see ``auth.require_role``),
its menu (``area``) and the row lookups its views share."""

from flask import Blueprint, abort, request

from portal import values
from portal.auth import require_role
from portal.pages import MINER_PAGES, Area

bp = Blueprint("miner", __name__, url_prefix="/miner")
bp.before_request(require_role("miner"))
area = Area(bp, MINER_PAGES)

MAX_ID = 2**63 - 1


def get_or_404(model, object_id):
    """The row of ``model`` with this id, or 404 (also for ids no row can have)."""
    found = model.get_or_none(model.id == object_id) if 0 < object_id <= MAX_ID else None
    if found is None:
        abort(404)
    return found


def row_to_edit(model):
    """The row of ``model`` that ``?edit=`` names (the page shows its form filled in), None
    when the query names none; 404 for an id of no row."""
    edit = values.row_id(request.args.get("edit"))
    return get_or_404(model, edit) if edit else None
