"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document, built from ``OPERATIONS``.

Nothing here is written by hand per endpoint: paths, methods, parameters,
roles and schemas all come from the ``route`` declarations, so a test can
check that every ``/api/v1/`` rule in the URL map is described.
"""

import re

from flask import current_app
from flask_babel import lazy_gettext as _l

from portal.api.registry import OPERATIONS, route
from portal.api.schema import Map, Object, String, Type

PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
CONVERTER_SCHEMAS = {"int": {"type": "integer"}}
ERROR = Object({"error": Object({"code": String(_l("Stable, for programs")),
                                 "message": String(_l("For people, in their language")),
                                 "fields": Map(String(), _l(
                                     "Field -> message, for values the rules refused"))},
                                required=("code", "message"))},
               required=("error",), name="Error")


class JsonObject(Type):
    """Any JSON object (the document itself)."""

    json_type = "object"


def openapi_path(rule):
    """A Flask rule (``/nodes/<int:node_id>``) as an OpenAPI path (``/nodes/{node_id}``)."""
    return PARAMETER.sub(r"{\2}", rule)


def _parameters(rule):
    return [{"name": name, "in": "path", "required": True,
             "schema": CONVERTER_SCHEMAS.get(converter, {"type": "string"})}
            for converter, name in PARAMETER.findall(rule)]


def _security(op):
    if op.public:
        return []
    return [{"bearer": []}, {"cookie": []}] if op.tokens else [{"cookie": []}]


def _operation(op, components):
    out = {"operationId": op.endpoint.split(".", 1)[1], "summary": str(op.summary),
           "security": _security(op)}
    if not op.public:
        out["x-hourglass-role"] = op.role or "any"
    if parameters := _parameters(op.rule):
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            op.body.media_type: {"schema": op.body.schema(components)}}}
    success = {"description": str(_l("Success") if op.response else _l("Done; no content"))}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response.schema(components)}}
    error = {"description": str(_l("An error")),
             "content": {"application/json": {"schema": ERROR.schema(components)}}}
    out["responses"] = {str(op.status): success, "default": error}
    return out


def document():
    """The whole OpenAPI document, in the request's language."""
    components, paths = {}, {}
    for op in OPERATIONS:
        paths.setdefault(openapi_path(op.rule), {})[op.method.lower()] = _operation(
            op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hourglass API", "version": "1", "description": str(_l(
            "Send a personal API token as 'Authorization: Bearer <token>', or use a "
            "signed-in browser session (requests that change something then need the "
            "X-CSRFToken header). Every error is JSON: "
            "{\"error\": {\"code\": ..., \"message\": ...}}."))},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": str(_l(
                "A personal API token (hg_...), made on the API tokens page or with "
                "'flask --app app token create USER'."))},
            "cookie": {"type": "apiKey", "in": "cookie",
                       "name": current_app.config["SESSION_COOKIE_NAME"],
                       "description": str(_l("The session of a signed-in browser."))},
        }},
    }


@route("/openapi.json", summary=_l("This document"), public=True, response=JsonObject())
def openapi():
    return document()
