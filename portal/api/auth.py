"""Who is calling the API: a personal API token, or the browser's session.

``Authorization: Bearer <token>`` wins when present (and the session cookie is
then ignored); otherwise the signed-in session user. The blueprint is exempt
from Flask-WTF's global CSRF check because a token request carries no cookie a
browser would send by itself; session requests that change something must
still carry the page's CSRF token in ``X-CSRFToken``, checked here.

Refused tokens count against the client's address as sign-in attempts do (the same
``LOGIN_RATE_LIMIT``, in a bucket of their own shared by every endpoint): past it, every
request from that address that sends ``Authorization`` gets 429 with ``Retry-After``, a
right token too (else a right guess would still stand out), until the window passes.
Requests without the header (a signed-in browser) are never limited by it.
"""

from functools import wraps

from flask import current_app, g, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import ValidationError, validate_csrf

from portal.api.blueprint import bp
from portal.api.errors import ApiError
from portal.extensions import limiter
from portal.tokens import verify_token
from portal.users import ROLE_NAMES

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _token_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


def _sends_no_token():
    return "Authorization" not in request.headers


def _token_refused(response):
    return g.get("token_refused", False)


limiter.shared_limit(_token_limit, scope="api-token", exempt_when=_sends_no_token,
                     deduct_when=_token_refused)(bp)


def api_user():
    """The user of this API request (set by ``require_role``)."""
    return g.api_user


def _authenticate():
    """(user, "token" | "session"); raises ApiError(401) when there is neither."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _sep, token = header.partition(" ")
        user = verify_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            g.token_refused = True  # counts against the address (the limit above)
            raise ApiError(401, "invalid_token", _(
                "The API token is not valid: it is mistyped, revoked, or its user is "
                "disabled. Send it as: Authorization: Bearer <token>."))
        return user, "token"
    if current_user.is_authenticated:
        return current_user._get_current_object(), "session"
    raise ApiError(401, "unauthorized", _(
        "Sign in, or send a personal API token: Authorization: Bearer <token>."))


def _check_csrf():
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    headers = current_app.config.get("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"])
    sent = next((request.headers[h] for h in headers if h in request.headers), None)
    try:
        validate_csrf(sent)
    except ValidationError:
        raise ApiError(400, "csrf", _(
            "A signed-in browser request that changes something needs the page's CSRF "
            "token in the X-CSRFToken header (scripts should use an API token).")) from None


def require_role(role, tokens=True):
    """Decorate an API view: the caller must be signed in or send a token (else 401),
    have ``role`` ("miner", "renter", or None for either; else 403), and, when
    ``tokens`` is False, come with a session rather than a token (else 403)."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            user, via = _authenticate()
            if via == "session" and request.method not in SAFE_METHODS:
                _check_csrf()
            if role is not None and user.role != role:
                raise ApiError(403, "forbidden", _("Only a %(role)s may use this endpoint.",
                                                   role=ROLE_NAMES[role]))
            if via == "token" and not tokens:
                raise ApiError(403, "session_required", _(
                    "This endpoint needs a signed-in session; an API token cannot use it."))
            g.api_user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate
