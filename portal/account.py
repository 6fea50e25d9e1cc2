"""The signed-in user's own account pages under ``/account``, for miners and renters alike.

Today: personal API tokens. A new token is shown once, in the response to the
POST that made it (with ``Cache-Control: no-store``); it is never flashed
(flashes live in the session cookie), logged, or put in a URL.
"""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from portal.auth import LOGIN
from portal.tokens import MAX_NAME, TokenError, create_token, revoke_token, tokens_of

bp = Blueprint("account", __name__, url_prefix="/account")


class TokenForm(FlaskForm):
    name = StringField(_l("What is it for? (e.g. laptop, CI)"),
                       validators=[DataRequired(), Length(max=MAX_NAME)])


@bp.before_request
def signed_in_only():
    if not current_user.is_authenticated:
        return redirect(url_for(LOGIN["renter"], next=request.full_path.rstrip("?")))
    return None


def _page(form=None, shown_token=None, status=200):
    """Render the tokens page; ``shown_token`` is the new token, shown this once."""
    headers = {"Cache-Control": "no-store"}
    if request.method == "POST":  # htmx shows the page's address, not the action's
        headers["HX-Push-Url"] = url_for("account.tokens")
    return render_template(
        "account/tokens.html",
        tokens=tokens_of(current_user),
        form=form or TokenForm(formdata=None),
        shown_token=shown_token,
    ), status, headers


@bp.get("/tokens")
def tokens():
    return _page()


@bp.post("/tokens")
def create_token_view():
    form = TokenForm()
    if not form.validate():
        return _page(form=form, status=400)
    try:
        _row, token = create_token(current_user._get_current_object(), form.name.data)
    except TokenError as exc:
        form.name.errors.append(str(exc))
        return _page(form=form, status=400)
    return _page(shown_token=token)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_token_view(token_id):
    row = revoke_token(current_user, token_id)
    if row is None:
        abort(404)
    flash(_("Revoked the token '%(name)s'.", name=row.name), "success")
    return redirect(url_for("account.tokens"), 303)
