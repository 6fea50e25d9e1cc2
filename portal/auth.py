"""Logging in and out, and the role checks every other page relies on.

Miners log in at ``/miner/login``, renters at ``/login``. One session cookie
carries the user id and the user's session nonce, so a password reset or a
disable ends every session, and a random id of the sign-in (``LOGIN_ID``): signing
out ends the notebook access that sign-in opened (``portal.proxy.access``). A renter
can never use a miner page and a miner never a renter page: both get 403.
"""

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from portal import values
from portal.extensions import limiter, login_manager
from portal.models import User
from portal.proxy.access import end_login, new_login_id
from portal.users import ROLE_NAMES, authenticate

bp = Blueprint("auth", __name__)

LOGIN_ID = "login_id"  # the session key of this sign-in's random id (notebook access)
HOME = {"miner": "miner.overview", "renter": "renter.overview"}
LOGIN = {"miner": "auth.miner_login", "renter": "auth.login"}


class LoginForm(FlaskForm):
    name = StringField(_l("User name"), validators=[DataRequired()])
    password = PasswordField(_l("Password"), validators=[DataRequired()])


@login_manager.user_loader
def load_user(session_id):
    """Flask-Login's loader: ``"<id>:<nonce>"`` -> the active user, else None."""
    user_id, _sep, nonce = session_id.partition(":")
    if (user_id := values.row_id(user_id)) is None:
        return None
    user = User.get_or_none(User.id == user_id)
    if user is None or not user.active or user.session_nonce != nonce:
        return None
    return user


def safe_next(target):
    """``target`` if it is a path on this site, else None.

    Rejects anything a browser could read as another origin: schemes,
    ``//host``, ``///host``, backslashes (``\\\\host``) and control characters.
    """
    if not target or any(ord(c) < 0x21 or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def require_role(role):
    """A ``before_request`` hook for a whole blueprint: only ``role`` may enter.

    Anonymous visitors go to that role's login page (and come back after);
    a signed-in user of the other role gets 403.
    """

    def check():
        if not current_user.is_authenticated:
            return redirect(url_for(LOGIN[role], next=request.full_path.rstrip("?")))
        if current_user.role != role:
            abort(403)
        return None

    return check


def _login_page(role, template):
    if current_user.is_authenticated and current_user.role == role:
        return redirect(url_for(HOME[role]))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.name.data.strip(), form.password.data)
        if user is None:
            flash(_("Wrong user name or password, or the account is disabled."), "error")
        elif user.role != role:
            flash(_("This account cannot sign in here. Use the %(role)s sign-in page.",
                    role=ROLE_NAMES[user.role]), "error")
        else:
            login_user(user)
            session[LOGIN_ID] = new_login_id()  # signing out ends its notebook access
            return redirect(safe_next(request.args.get("next")) or url_for(HOME[role]))
        status = 401
    else:
        status = 400 if request.method == "POST" else 200
    return render_template(template, form=form, role=role), status


def _login_limit():
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    return _login_page("renter", "auth/login.html")


@bp.route("/miner/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def miner_login():
    return _login_page("miner", "auth/login.html")


@bp.post("/logout")
def logout():
    role = current_user.role if current_user.is_authenticated else "renter"
    end_login(session.pop(LOGIN_ID, None))  # this sign-in's notebook tabs lose access
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for(LOGIN[role]))


@bp.route("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for(HOME[current_user.role]))
    return redirect(url_for("auth.login"))


def init_app(app):
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    app.register_blueprint(bp)
