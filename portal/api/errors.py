"""Every error under ``/api/`` is JSON: ``{"error": {"code": ..., "message": ...}}``, plus
``"fields": {field: message}`` when the rules refused values the body held.

Errors raised in API views (``ApiError``, ``abort``, an unexpected exception's
500) are handled by the blueprint. An unknown URL or a wrong method under
``/api/`` fails in routing, before any blueprint is chosen, and the app's own
404/405 handlers render HTML pages; an app-level ``before_request`` hook
(which runs before the routing error is raised) answers those with JSON.
"""

from contextlib import contextmanager

from flask import jsonify, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, default_exceptions

from portal.api.blueprint import bp
from portal.values import FieldErrors


class ApiError(Exception):
    """An error an API view reports: HTTP ``status``, a stable ``code`` for programs,
    a ``message`` for people, and maybe ``fields`` ({field: message}) for the values refused."""

    def __init__(self, status, code, message, fields=None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def refused(message, fields=None):
    """ApiError(409, "conflict"): the document allows the body, but the rules refuse it as
    things are -- a name already taken, a pool, spec or group that does not exist or is not
    yours, a state that forbids it. (A body the document refuses is 400 ``invalid_body``.)
    ``fields`` maps the body's fields to their messages."""
    return ApiError(409, "conflict", message, fields or None)


def refusal(exc, rename=None):
    """``refused`` (409) for a refusal of the rules (``values.FieldErrors``); ``rename`` maps
    the rules' field names (those of the pages' forms) to the body's. Whole-body messages are
    only in ``message``."""
    rename = rename or {}
    return refused(str(exc), {rename.get(key, key): message
                              for key, message in exc.errors.items() if key})


@contextmanager
def refusals(rename=None):
    """Raise ``refusal(exc, rename)`` for a ``values.FieldErrors`` raised inside: how an API
    view calls the rules that may refuse what it asks."""
    try:
        yield
    except FieldErrors as exc:
        raise refusal(exc, rename) from None


def error_response(status, code, message, fields=None):
    error = {"code": code, "message": str(message)}
    if fields is not None:
        error["fields"] = {key: str(value) for key, value in fields.items()}
    return jsonify({"error": error}), status


def _messages():
    return {
        400: _("The request was not understood."),
        401: _("Sign in, or send a personal API token: Authorization: Bearer <token>."),
        403: _("Your account may not use this endpoint."),
        404: _("There is nothing here."),
        405: _("This endpoint does not answer that method."),
        429: _("Too many attempts from your address. Try again after the seconds in the "
               "Retry-After header."),
        500: _("Something went wrong on the server."),
    }


def _code(exc):
    return exc.name.lower().replace(" ", "_").replace("'", "")


def _http_error(exc):
    message = _messages().get(exc.code, exc.description)
    response, status = error_response(exc.code, _code(exc), message)
    if exc.code == 405:
        response.headers["Allow"] = ", ".join(exc.valid_methods or ())
    return response, status


@bp.errorhandler(ApiError)
def _api_error(exc):
    return error_response(exc.status, exc.code, exc.message, exc.fields)


# By code, not by HTTPException: Flask prefers the app's handler for a code over a
# blueprint's handler for the class, and the app has HTML handlers for 400-429.
for _status in default_exceptions:
    bp.register_error_handler(_status, _http_error)


@bp.before_app_request
def _routing_errors_as_json():
    """Answer an unknown ``/api/`` URL (404) or method (405) in JSON, not the HTML page."""
    exc = request.routing_exception
    if (isinstance(exc, HTTPException) and exc.code >= 400
            and (request.path == "/api" or request.path.startswith("/api/"))):
        return _http_error(exc)
    return None
