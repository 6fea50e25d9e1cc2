"""The portal's security headers, through Flask-Talisman; the notebook origin's are in
``portal.proxy`` (its proxied JupyterLab answers need other ones).

Every portal answer carries a Content-Security-Policy with no inline script and no eval
(scripts are files under ``static/js/``; htmx's settings are a ``<meta name="htmx-config">``
tag, its indicator styles live in ``hourglass.css``), no inline style either, no framing
(``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``), ``X-Content-Type-Options:
nosniff`` and ``Referrer-Policy: same-origin``. Talisman forces no HTTPS (a lab may serve
plain http) and keeps the session cookie settings of ``portal.config``.

Frames may come from this origin only (``default-src 'self'``).

A view whose page needs more says so for its own answer only: ``allow`` adds sources to a
directive (Open's form posts to the notebook origin; xterm.js writes inline styles; the
miner's pages with Grafana's panels frame its origin, see ``portal.grafana.panels``), and
``referrer_policy`` replaces the Referrer-Policy.
"""

from flask import g

from portal.extensions import talisman

CSP = "Content-Security-Policy"
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",  # Pico CSS draws its icons as data: SVG images
    # 'self' matches ws:/wss: of the same host and port too (CSP level 3): the console.
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def allow(directive, *sources):
    """Let the page of this request also use ``sources`` for ``directive``."""
    extra = g.setdefault("csp_extra", {})
    extra.setdefault(directive, []).extend(sources)


def referrer_policy(value):
    """This answer's Referrer-Policy instead of ``same-origin``."""
    g.referrer_policy = value


def policy_text(policy):
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


def _view_wishes(response):
    """After Talisman (registered before it, so it runs after it): this view's additions."""
    extra = g.get("csp_extra")
    if extra and CSP in response.headers:
        policy = dict(POLICY)
        for directive, sources in extra.items():
            policy[directive] = " ".join([policy.get(directive, POLICY["default-src"]),
                                          *sources])
        response.headers[CSP] = policy_text(policy)
    if g.get("referrer_policy"):
        response.headers["Referrer-Policy"] = g.referrer_policy
    return response


def init_app(app):
    app.after_request(_view_wishes)
    talisman.init_app(
        app,
        force_https=False,
        # Only over HTTPS (Talisman sends it on secure requests only), and for this host only:
        # other services of a lab's domain may still speak plain http.
        strict_transport_security_include_subdomains=False,
        frame_options="DENY",
        content_security_policy=POLICY,
        referrer_policy="same-origin",
        # Talisman would otherwise turn Secure on for every cookie: keep portal.config's.
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=app.config["SESSION_COOKIE_HTTPONLY"],
        session_cookie_samesite=app.config["SESSION_COOKIE_SAMESITE"],
    )
