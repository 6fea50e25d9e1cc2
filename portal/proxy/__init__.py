"""The notebook proxy: JupyterLab of a renter's running notebook, on a separate origin.

``init_app(portal)`` builds a second, small Flask app for the notebook origin and puts a
``PortDispatcher`` in front of the portal's WSGI app: a request that arrived on the
notebook port (``HOURGLASS_NOTEBOOK_PORT``, which ``serve`` binds beside ``PORT``) goes to
the proxy app, every other to the portal. So the portal never serves ``/nb/`` and the proxy
never serves a portal page, and code running in a notebook page, on the other origin,
cannot read the portal's cookies (HttpOnly, and another origin's pages). The proxy app has
no Flask session: its one cookie is the access session's random token (``access``).

Modules: ``access`` (grants and access sessions, who may reach which replica),
``forward`` (HTTP), ``bridge`` (WebSockets), ``views`` (the routes), ``urls``.
"""

from pathlib import Path

from flask import Flask, current_app, render_template, request
from flask_babel import Babel, get_locale
from flask_babel import lazy_gettext as _l

from portal.db import database

COOKIE = "hourglass_notebook"
SHARED_SETTINGS = ("PORT", "NOTEBOOK_PORT", "NOTEBOOK_URL", "PORTAL_URL",
                   "SESSION_COOKIE_SECURE", "LANGUAGES", "BABEL_TRANSLATION_DIRECTORIES",
                   "TESTING")
ERRORS = {
    401: _l("Sign in to Hourglass and open the notebook again."),
    403: _l("You may not open this page."),
    404: _l("There is nothing here."),
    405: _l("This address does not answer that kind of request."),
    500: _l("Something went wrong in the notebook proxy."),
}


def arrival_port(environ):
    """The local port the request came in on: gunicorn's socket, else ``SERVER_PORT``
    (the Flask test client sets it from the URL; Werkzeug's server from its socket)."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            name = sock.getsockname()
        except OSError:
            name = None
        if isinstance(name, tuple) and len(name) >= 2:
            return name[1]
    port = environ.get("SERVER_PORT", "")
    return int(port) if port.isascii() and port.isdigit() else None


class PortDispatcher:
    """WSGI middleware: the notebook port's requests to ``proxy``, the rest to ``portal``."""

    def __init__(self, portal, proxy, notebook_port):
        self.portal, self.proxy, self.notebook_port = portal, proxy, notebook_port

    def __call__(self, environ, start_response):
        if arrival_port(environ) == self.notebook_port:
            return self.proxy(environ, start_response)
        return self.portal(environ, start_response)


def _locale():
    """The notebook origin knows no user: the browser's language, else English."""
    return request.accept_languages.best_match(current_app.config["LANGUAGES"]) or "en"


def create_proxy_app(portal):
    """The notebook origin's Flask app, sharing ``portal``'s settings and database."""
    from portal.proxy import forward, views

    root = Path(portal.root_path)
    proxy = Flask("portal.proxy", root_path=str(root), template_folder="templates",
                  static_folder=None)
    proxy.config.update({key: portal.config[key] for key in SHARED_SETTINGS
                         if key in portal.config})
    proxy.config.update(NOTEBOOK_COOKIE=COOKIE, SESSION_COOKIE_NAME="hourglass_nb_session",
                        MAX_CONTENT_LENGTH=None)
    Babel(proxy, locale_selector=_locale)
    proxy.jinja_env.globals["get_locale"] = get_locale
    proxy.register_blueprint(views.bp)
    proxy.extensions["hourglass.proxy.http"] = forward.http_session()

    @proxy.teardown_appcontext
    def close_database(exc=None):
        if not database.is_closed():
            database.close()

    def error_page(exc):
        return render_template("proxy/message.html", status=exc.code,
                               message=ERRORS[exc.code], portal=None), exc.code

    for code in ERRORS:
        proxy.register_error_handler(code, error_page)
    return proxy


def init_app(portal):
    """Build the proxy app for ``portal`` and dispatch the notebook port's requests to it."""
    proxy = create_proxy_app(portal)
    portal.extensions["hourglass.proxy"] = proxy
    portal.wsgi_app = PortDispatcher(portal.wsgi_app, proxy.wsgi_app,
                                     portal.config["NOTEBOOK_PORT"])
    return proxy
