"""The JSON API's blueprint under ``/api/v1/``.

Flask-WTF's global CSRF check skips this blueprint (it cannot tell a token
request from a session one); ``auth`` does the check for session requests.
"""

from flask import Blueprint

from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
