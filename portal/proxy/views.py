"""The notebook origin's routes: entering with a grant, and ``/nb/<replica id>/…``.

- ``POST /_hourglass/enter`` (a form the portal's Open page submits, cross-origin, with
  the one-time grant): sets the access cookie and redirects to ``/nb/<replica id>/lab``.
- ``/nb/<replica id>/…``: every method, proxied to the replica's JupyterLab
  (``forward``), and WebSockets (``bridge``). Without a live access session a page
  navigation goes to the portal's sign-in page (and to the notebooks list after: the
  answer is the same for every replica id, so it tells nobody which ids are notebooks),
  anything else gets 401; another renter's replica 403; one that does not run 503.
  Requests that change something must come from this origin (``Origin``), so must
  WebSockets.
- ``/``: to the portal's notebooks page. Nothing else is served here.
"""

from types import SimpleNamespace
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, current_app, redirect, render_template, request
from flask_babel import gettext as _
from simple_websocket import ConnectionError as Refusal

from portal.proxy import access, bridge, forward, urls

bp = Blueprint("proxy", __name__)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def page(status, message, retry=False):
    """The notebook origin's own small page: a message and the way back to Hourglass;
    with ``retry``, it reloads itself every few seconds (JupyterLab still starting)."""
    return render_template("proxy/message.html", status=status, message=message,
                           retry=retry, portal=urls.portal_url() + "/renter/notebooks"), status


def _cookie_name():
    return current_app.config["NOTEBOOK_COOKIE"]


@bp.post("/_hourglass/enter")
def enter():
    try:
        token, replica_id = access.redeem_grant(request.form.get("grant", ""),
                                                request.headers.get("Origin"))
    except access.Refused as exc:
        return page(exc.status, exc.message)
    access.end_session(request.cookies.get(_cookie_name()))
    response = redirect(f"/nb/{replica_id}/lab", 303)
    response.set_cookie(_cookie_name(), token, max_age=access.ACCESS_HOURS * 3600,
                        path="/", httponly=True, samesite="Lax",
                        secure=current_app.config["SESSION_COOKIE_SECURE"])
    response.headers["Cache-Control"] = "no-store"
    return response


def _same_origin(origin):
    """Whether ``origin`` (an Origin header) is this notebook origin."""
    parts = urlsplit(origin or "")
    configured = current_app.config["NOTEBOOK_URL"]
    expected = urlsplit(configured).netloc if configured else request.host
    return parts.scheme in ("http", "https") and parts.netloc.lower() == expected.lower()


def _to_sign_in():
    """The same answer for any replica id, existing or not: it names no notebook."""
    return redirect(f"{urls.portal_url()}/login?{urlencode({'next': '/renter/notebooks'})}",
                    303)


def _navigation():
    """A page the browser navigates to (not a script's fetch or XHR)."""
    mode = request.headers.get("Sec-Fetch-Mode")
    return request.method == "GET" and (mode == "navigate" or mode is None)


def _admit(replica_id):
    """The access session and target of this request, or the answer refusing it."""
    session = access.session_of(request.cookies.get(_cookie_name()))
    if session is None:
        if _navigation() and not request.environ.get("HTTP_UPGRADE"):
            return None, _to_sign_in()
        return None, page(401, _("Sign in to Hourglass and open the notebook again."))
    try:
        return SimpleNamespace(session=session,
                               target=access.target(session.user_id, replica_id)), None
    except access.Refused as exc:
        return None, page(exc.status, exc.message)


@bp.route("/nb/<int:replica_id>/", defaults={"rest": ""}, methods=METHODS)
@bp.route("/nb/<int:replica_id>/<path:rest>", methods=METHODS)
def notebook(replica_id, rest):
    admitted, refusal = _admit(replica_id)
    if refusal is not None:
        return refusal
    if request.method not in SAFE_METHODS and "Origin" in request.headers \
            and not _same_origin(request.headers["Origin"]):
        return page(403, _("Requests from other sites are refused."))
    try:
        return forward.forward(current_app.extensions["hourglass.proxy.http"],
                               admitted.target)
    except forward.UpstreamError as exc:
        current_app.logger.warning("notebook replica %s did not answer: %s", replica_id, exc)
        return page(502, _("JupyterLab is not answering yet; this page tries again by "
                           "itself."), retry=_navigation())


@bp.route("/nb/<int:replica_id>/", defaults={"rest": ""}, websocket=True,
          endpoint="websocket")
@bp.route("/nb/<int:replica_id>/<path:rest>", websocket=True, endpoint="websocket")
def websocket(replica_id, rest):
    admitted, refusal = _admit(replica_id)
    if refusal is not None:
        return refusal
    if not _same_origin(request.headers.get("Origin")):
        abort(403)
    target = admitted.target
    try:
        upstream = bridge.Upstream(
            target.address, forward.upstream_path(request.environ, replica_id),
            bridge.requested_subprotocols(request.environ),
            [("Authorization", f"token {target.secret}")])
    except Refusal as exc:
        status = exc.status_code if 400 <= (exc.status_code or 0) < 500 else 502
        return page(status, _("JupyterLab refused the connection."))
    except OSError as exc:
        current_app.logger.warning("notebook replica %s did not answer: %s", replica_id,
                                   type(exc).__name__)
        return page(502, _("JupyterLab is not answering yet. Wait a moment and reload."))
    ws = bridge.accept(request.environ, upstream.subprotocol)
    session_id, nonce = admitted.session.id, admitted.session.nonce
    user_id, address = admitted.session.user_id, target.address

    def still_allowed():
        if not access.session_alive(session_id, nonce):
            return False
        try:
            return access.target(user_id, replica_id).address == address
        except access.Refused:
            return False

    bridge.bridge(ws, upstream, still_allowed, name=f"notebook-ws-r{replica_id}")
    return bridge.Done(ws)


@bp.get("/")
def home():
    return redirect(urls.portal_url() + "/renter/notebooks")
