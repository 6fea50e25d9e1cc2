"""The caller's own account: ``/me`` and the JSON twins of the API tokens page.

A token cannot make tokens (``tokens=False``): otherwise a leaked token could
mint a replacement before it is revoked. It can list and revoke them.
"""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from portal.api.auth import api_user
from portal.api.errors import ApiError, refused
from portal.api.registry import route
from portal.api.schema import Array, Integer, Name, Object, Record, String, iso
from portal.models import Group, Membership
from portal.tokens import MAX_NAME, TokenError, create_token, revoke_token, tokens_of

ME = Record({
    "id": Integer(),
    "name": String(),
    "display_name": String(),
    "role": String(_l("miner or renter")),
    "groups": Array(String()),
    "locale": String(_l("The chosen language, or null for the browser's"), nullable=True),
}, name="Me")

TOKEN = Record({
    "id": Integer(),
    "name": String(),
    "prefix": String(_l("The token's first characters, to recognise it")),
    "created_at": String(format="date-time"),
    "last_used_at": String(format="date-time", nullable=True),
}, name="Token")

NEW_TOKEN = Object({"name": Name(MAX_NAME, _l("What the token is for"))}, required=("name",),
                   name="NewToken")
CREATED_TOKEN = Record({"token": TOKEN, "secret": String(_l("The token, shown this once"))},
                       name="CreatedToken")


def token_json(row):
    return {"id": row.id, "name": row.name, "prefix": row.prefix,
            "created_at": iso(row.created_at), "last_used_at": iso(row.last_used_at)}


@route("/me", summary=_l("Who you are"), response=ME)
def me():
    user = api_user()
    groups = (Group.select(Group.name).join(Membership)
              .where(Membership.user == user).order_by(Group.name))
    return {"id": user.id, "name": user.name, "display_name": user.display_name,
            "role": user.role, "groups": [g.name for g in groups], "locale": user.locale}


@route("/tokens", summary=_l("Your API tokens"), response=Array(TOKEN))
def list_tokens():
    return [token_json(row) for row in tokens_of(api_user())]


@route("/tokens", "POST", summary=_l("Create an API token (signed-in sessions only)"),
       tokens=False, body=NEW_TOKEN, response=CREATED_TOKEN, status=201)
def create_token_api(body):
    try:
        row, secret = create_token(api_user(), body["name"])
    except TokenError as exc:
        raise refused(str(exc)) from None
    return {"token": token_json(row), "secret": secret}


@route("/tokens/<int:token_id>", "DELETE", summary=_l("Revoke one of your API tokens"))
def revoke_token_api(token_id):
    if revoke_token(api_user(), token_id) is None:
        raise ApiError(404, "not_found", _("You have no API token %(id)d.", id=token_id))
