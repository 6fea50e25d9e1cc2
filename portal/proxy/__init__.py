"""The notebook proxy: JupyterLab of a renter's running notebook, on a separate origin.

``init_app(portal)`` builds a second, small Flask app for the notebook origin and puts a
``PortDispatcher`` in front of the portal's WSGI app: a request that arrived on the
notebook port (``HOURGLASS_NOTEBOOK_PORT``, which ``serve`` binds beside ``PORT``) goes to
the proxy app, every other to the portal. So the portal never serves ``/nb/`` and the proxy
never serves a portal page, and code running in a notebook page, on the other origin,
cannot read the portal's cookies (HttpOnly, and another origin's pages). The proxy app has
no Flask session: its one cookie is the access session's random token (``access``).

Headers: the proxy's own answers (its message pages, redirects, errors) carry a strict
Content-Security-Policy (nothing but their one inline ``<style>``, by hash; no framing),
``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: same-origin``. A proxied
JupyterLab answer keeps its own headers, CSP included (JupyterLab runs inline scripts and
eval), and gets ``nosniff``, ``Referrer-Policy: same-origin``, and a second CSP header of
ours, ``frame-ancestors 'self'``: JupyterLab may frame its own pages, nothing else may frame
them (the portal never does), whatever the container's Jupyter is configured to send.

Modules: ``access`` (grants and access sessions, who may reach which replica),
``forward`` (HTTP), ``bridge`` (WebSockets), ``views`` (the routes), ``urls``.
"""

import base64
import hashlib
from pathlib import Path

from flask import Flask, current_app, render_template, request
from flask_babel import Babel, get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from portal import values
from portal.db import database
from portal.proxy.forward import Passthrough

COOKIE = "hourglass_notebook"
SHARED_SETTINGS = ("PORT", "NOTEBOOK_PORT", "NOTEBOOK_URL", "PORTAL_URL",
                   "SESSION_COOKIE_SECURE", "LANGUAGES", "BABEL_TRANSLATION_DIRECTORIES",
                   "TESTING")
# The one inline style of the proxy's own pages (templates/proxy/message.html), allowed by
# its hash: the same answer every time, no nonce.
PAGE_STYLE = Markup("body { font-family: system-ui, sans-serif; max-width: 40rem; "
                    "margin: 4rem auto; padding: 0 1rem; color: #1b1b1b; } "
                    "h1 { font-size: 1.5rem; }")
OWN_CSP = ("default-src 'none'; style-src 'sha256-"
           + base64.b64encode(hashlib.sha256(PAGE_STYLE.encode()).digest()).decode()
           + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PROXIED_CSP = "frame-ancestors 'self'"
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
    return values.row_id(port, 65535)


class PortDispatcher:
    """WSGI middleware: the notebook port's requests to ``proxy``, the rest to ``portal``."""

    def __init__(self, portal, proxy, notebook_port):
        self.portal, self.proxy, self.notebook_port = portal, proxy, notebook_port

    def __call__(self, environ, start_response):
        if arrival_port(environ) == self.notebook_port:
            return self.proxy(environ, start_response)
        return self.portal(environ, start_response)


def security_headers(response):
    """The notebook origin's headers (see the module's docstring), after every answer."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    if isinstance(response, Passthrough):
        headers.add("Content-Security-Policy", PROXIED_CSP)
        headers["X-Frame-Options"] = "SAMEORIGIN"
    else:
        headers["Content-Security-Policy"] = OWN_CSP
        headers["X-Frame-Options"] = "DENY"
    return response


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
    proxy.jinja_env.globals["page_style"] = PAGE_STYLE
    proxy.after_request(security_headers)
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
