"""HTTP through the notebook proxy: one request to a replica's JupyterLab, streamed both ways.

The method, the path as the browser sent it (under ``/nb/<replica id>/``), the query
(less any ``token`` parameter) and the body go to ``http://<Replica.address>``; the body
streams (``Content-Length`` bodies as they arrive, chunked ones chunked), so a large
upload is never held whole. Request headers go along except hop-by-hop ones, ``Host``,
``Cookie`` (the browser's cookies of this host, the portal's included, never reach a
container), ``Authorization``, ``Origin``, ``Referer`` and forwarding headers; the proxy
adds ``Authorization: token <the run's token>`` and asks for an unencoded body. The answer
streams back less hop-by-hop headers and ``Set-Cookie`` (every request carries the token,
so JupyterLab's cookies are not needed), with the token masked wherever it would appear:
in headers, ``Location`` (whose ``token`` parameter is dropped too) and the body (Jupyter
puts it in some of its own pages).

Nothing here logs a header or a body; requests' own debug logging shows neither.
"""

from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
from flask import Response, request
from requests.adapters import HTTPAdapter

CHUNK = 64 * 1024
CONNECT_SECONDS = 10
READ_SECONDS = 600  # between two reads of the answer; kernels' long work uses WebSockets
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade"})
NOT_UPSTREAM = HOP_BY_HOP | {"host", "cookie", "authorization", "content-length", "origin",
                             "referer", "accept-encoding", "forwarded", "x-forwarded-for",
                             "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
                             "x-real-ip"}
NOT_DOWNSTREAM = HOP_BY_HOP | {"set-cookie", "server"}
PATH_SAFE = "/:@!$&'()*+,;=-._~%"


class UpstreamError(Exception):
    """JupyterLab did not answer (not listening yet, or gone)."""


class Passthrough(Response):
    """A response whose headers are the upstream's own: no default Content-Type."""

    default_mimetype = None


def http_session(pool_size=64):
    """A requests session for the proxy: no cookies kept, nothing from the environment
    (no HTTP_PROXY, no .netrc credentials), a connection pool per replica address."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.mount("http://", HTTPAdapter(pool_connections=16, pool_maxsize=pool_size))
    return session


def without_token(query):
    """``query`` (a raw query string) less every ``token`` parameter, otherwise unchanged."""
    kept = [part for part in query.split("&")
            if part and unquote(part.partition("=")[0]).strip().lower() != "token"]
    return "&".join(kept)


def upstream_path(environ, replica_id):
    """The path and query to ask JupyterLab for: the browser's own request target when it
    is under ``/nb/<replica id>``, else the decoded path quoted again; no ``token``."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    path, _sep, query = raw.partition("?")
    prefix = f"/nb/{replica_id}/"
    if not path.startswith(prefix):
        path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe=PATH_SAFE)
        query = environ.get("QUERY_STRING", "")
    query = without_token(query)
    return path + (f"?{query}" if query else "")


class _SizedBody:
    """A request body of known length, read from the WSGI input as requests sends it."""

    def __init__(self, stream, length):
        self.stream, self.length = stream, length

    def __len__(self):
        return self.length

    def read(self, size=CHUNK):
        return self.stream.read(size if size and size > 0 else CHUNK)

    def __iter__(self):
        return iter(lambda: self.stream.read(CHUNK), b"")


def _body():
    """What to send upstream: None, a sized stream, or chunks (sent chunked)."""
    length = request.content_length
    if length:
        return _SizedBody(request.stream, length)
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        stream = request.stream
        return iter(lambda: stream.read(CHUNK), b"")
    return None


def mask(text, secret):
    """``text`` with ``secret`` replaced by as many zeros (lengths stay right)."""
    return text.replace(secret, "0" * len(secret)) if secret else text


def masked_chunks(chunks, secret):
    """The bytes of ``chunks`` with ``secret`` masked, also where it spans two chunks."""
    needle = secret.encode()
    zeros, keep = b"0" * len(needle), len(needle) - 1
    tail = b""
    for chunk in chunks:
        data = (tail + chunk).replace(needle, zeros)
        if len(data) > keep:
            yield data[:len(data) - keep]
            tail = data[len(data) - keep:]
        else:
            tail = data
    if tail:
        yield tail


def clean_location(value, target):
    """A ``Location`` from JupyterLab, for the browser: relative when it named the replica's
    own address, without a ``token`` parameter, the token masked anyway."""
    parts = urlsplit(mask(value, target.secret))
    if parts.netloc.lower() == target.address.lower():
        parts = parts._replace(scheme="", netloc="")
    return urlunsplit(parts._replace(query=without_token(parts.query)))


def forward(session, target):
    """Send the current request to ``target`` (a ``access.Target``); the streamed answer.
    Raises UpstreamError when JupyterLab cannot be reached."""
    headers = [(name, value) for name, value in request.headers.items()
               if name.lower() not in NOT_UPSTREAM]
    headers += [("Accept-Encoding", "identity"), ("Authorization", f"token {target.secret}")]
    url = f"http://{target.address}{upstream_path(request.environ, target.replica_id)}"
    try:
        upstream = session.request(request.method, url, headers=dict(headers), data=_body(),
                                   stream=True, allow_redirects=False,
                                   timeout=(CONNECT_SECONDS, READ_SECONDS))
    except requests.RequestException as exc:
        raise UpstreamError(type(exc).__name__) from None
    answer = []
    for name, value in upstream.raw.headers.items():
        lowered = name.lower()
        if lowered in NOT_DOWNSTREAM:
            continue
        value = clean_location(value, target) if lowered == "location" \
            else mask(value, target.secret)
        answer.append((name, value))
    body = masked_chunks(upstream.raw.stream(CHUNK, decode_content=False), target.secret)
    response = Passthrough(body, status=upstream.status_code, headers=answer,
                           direct_passthrough=True)
    response.call_on_close(upstream.close)
    return response
