"""The JSON API under ``/api/v1/``: the twin of every portal list and action.

- ``schema``: the tiny schema language (request checks and document schemas)
- ``errors``: every error under /api/ as ``{"error": {"code", "message"}}``
- ``auth``: Bearer token or session, ``require_role``, CSRF for sessions
- ``registry``: ``route``, the one place an endpoint is declared
- ``openapi``: the OpenAPI 3.1 document built from the registry
- ``account``, ``nodes``: the endpoints

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
