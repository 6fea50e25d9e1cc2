"""Where every API endpoint is declared, once.

``route`` adds the URL rule to the blueprint, wraps the view in its role check
and body parser, and records the summary, role and schemas in ``OPERATIONS``;
the OpenAPI document is built from that list, so the document and the routes
cannot drift apart. A new endpoint is one decorated function::

    @route("/specs", summary=_l("Specs you may use"), role=None, response=Array(SPEC))
    def list_specs():
        return [spec_json(spec) for spec in ...]

The view returns plain data (sent as JSON with ``status``), or None for 204.
With ``body=`` it receives the checked request body as ``body``.
"""

from dataclasses import dataclass
from functools import wraps

from flask import jsonify, request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from portal.api.auth import require_role
from portal.api.blueprint import bp
from portal.api.errors import ApiError
from portal.api.schema import SchemaError, Type

MAX_BODY = 64 * 1024  # bytes; a bigger body is answered 413 before it is parsed


@dataclass(frozen=True)
class Operation:
    """One method on one URL rule, as the OpenAPI document describes it."""

    rule: str
    method: str
    endpoint: str
    summary: str
    role: str | None
    public: bool
    tokens: bool
    body: Type | None
    response: Type | None
    status: int


OPERATIONS = []


def read_body(schema):
    """The request's JSON object, checked against ``schema``; ApiError(400) otherwise. For a
    ``Binary`` schema, the request's stream itself (any size; the view reads it)."""
    if schema.media_type != "application/json":
        if request.mimetype != schema.media_type:
            raise ApiError(415, "unsupported_media_type", _(
                "The body must be sent with Content-Type: %(type)s.", type=schema.media_type))
        return request.stream
    request.max_content_length = MAX_BODY
    if not request.is_json:
        raise ApiError(400, "invalid_body",
                       _("The body must be JSON, sent with Content-Type: application/json."))
    try:
        data = request.get_json()
    except BadRequest:
        raise ApiError(400, "invalid_body", _("The body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", _("The body must be a JSON object."))
    try:
        return schema.validate(data, "")
    except SchemaError as exc:
        raise ApiError(400, "invalid_body", str(exc),
                       {exc.field: str(exc)} if exc.field else None) from None


def route(rule, method="GET", *, summary, role=None, public=False, tokens=True, body=None,
          response=None, status=200):
    """Register an API view; see the module docstring. ``role``: "miner", "renter" or None
    (any signed-in user); ``public``: no sign-in at all; ``tokens=False``: sessions only."""

    def decorate(view):
        @wraps(view)
        def handler(**kwargs):
            if body is not None:
                kwargs["body"] = read_body(body)
            result = view(**kwargs)
            return ("", 204) if response is None else (jsonify(result), status)

        wrapped = handler if public else require_role(role, tokens)(handler)
        bp.add_url_rule(rule, view.__name__, wrapped, methods=[method])
        OPERATIONS.append(Operation(rule=bp.url_prefix + rule, method=method,
                                    endpoint=f"{bp.name}.{view.__name__}", summary=summary,
                                    role=role, public=public, tokens=tokens, body=body,
                                    response=response, status=204 if response is None else status))
        return wrapped

    return decorate
