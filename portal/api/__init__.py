"""The JSON API under ``/api/v1/``: the twin of every portal list and action.

``bp`` is the blueprint. Each module of this package puts its part on it when imported:
endpoints declared with ``registry.route`` (which also records them for the OpenAPI
document), the error handlers (``errors``), the limit on refused tokens (``auth``). The
import list at the bottom loads them all; a new module of endpoints joins it.

Flask-WTF's global CSRF check skips this blueprint (it cannot tell a token
request from a session one); ``auth`` does the check for session requests.
"""

from flask import Blueprint

from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

# These modules register their handlers and routes on bp.
from portal.api import (  # noqa: E402,F401
    account,
    billing,
    errors,
    images,
    my_billing,
    nodes,
    notebooks,
    openapi,
    pools,
    resources,
    specs,
    tasks,
)
