"""The public base URLs of the two origins, for links and redirects between them.

``HOURGLASS_NOTEBOOK_URL`` and ``HOURGLASS_PORTAL_URL`` when set (a subdomain, HTTPS in
front); otherwise the other origin is the same scheme and host name as the request, on
the other port (``HOURGLASS_NOTEBOOK_PORT`` or ``PORT``), so a portal reached as
``http://lab:8000`` opens notebooks at ``http://lab:8001``.
"""

from urllib.parse import urlsplit

from flask import current_app, request


def _same_host(port):
    try:
        hostname = urlsplit(f"//{request.host}").hostname or "localhost"
    except ValueError:
        hostname = "localhost"
    if ":" in hostname:  # IPv6
        hostname = f"[{hostname}]"
    return f"{request.scheme}://{hostname}:{port}"


def notebook_url():
    """The notebook origin's base URL (no trailing slash), seen from a portal request."""
    return current_app.config["NOTEBOOK_URL"] or _same_host(current_app.config["NOTEBOOK_PORT"])


def notebook_origin():
    """The notebook origin (``scheme://host[:port]``, no path), seen from a portal request:
    what a portal page's Content-Security-Policy names to let a form post there."""
    parts = urlsplit(notebook_url())
    return f"{parts.scheme}://{parts.netloc}"


def portal_url():
    """The portal's base URL (no trailing slash), seen from a notebook-origin request."""
    return current_app.config["PORTAL_URL"] or _same_host(current_app.config["PORT"])


def origin():
    """The portal's origin as the browser sees it (``scheme://host[:port]``, lower case):
    ``HOURGLASS_PORTAL_URL``'s when set (behind HTTPS the request itself may say http),
    else this request's own."""
    configured = current_app.config["PORTAL_URL"]
    if configured:
        parts = urlsplit(configured)
        return f"{parts.scheme}://{parts.netloc}".lower()
    return request.host_url.rstrip("/").lower()
