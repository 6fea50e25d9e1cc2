"""English and Simplified Chinese: which one a request gets, and the switch.

Order: the signed-in user's saved choice, then this browser session's
choice, then the browser's Accept-Language, then English.
"""

from flask import (
    Blueprint,
    current_app,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import format_timedelta, get_locale
from flask_login import current_user

from portal.auth import safe_next
from portal.extensions import babel
from portal.models import utcnow

bp = Blueprint("i18n", __name__)

LANGUAGE_NAMES = {"en": "English", "zh_CN": "简体中文"}


def select_locale():
    """Flask-Babel's locale selector, called once per request that translates."""
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # CLI commands speak English
        return "en"
    if current_user.is_authenticated and current_user.locale in languages:
        return current_user.locale
    if session.get("locale") in languages:
        return session["locale"]
    return request.accept_languages.best_match(languages) or "en"


@bp.post("/language")
def switch():
    """Remember the chosen language (for the user, when signed in) and go back."""
    locale = request.form.get("locale")
    if locale in current_app.config["LANGUAGES"]:
        session["locale"] = locale
        if current_user.is_authenticated:
            current_user.locale = locale
            current_user.save(only=["locale"])
    return redirect(safe_next(request.form.get("next")) or url_for("auth.index"))


def since(moment):
    """How long ago ``moment`` (naive UTC) was, in the reader's language ("3 minutes")."""
    return format_timedelta(utcnow() - moment, threshold=1.1)


def init_app(app):
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals.update(LANGUAGE_NAMES=LANGUAGE_NAMES, get_locale=get_locale,
                                 since=since)
    app.register_blueprint(bp)
