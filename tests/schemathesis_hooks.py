"""Hooks that ``st run`` loads (``SCHEMATHESIS_HOOKS=tests/schemathesis_hooks.py``) for
tests/integration/test_api_contract.py; a person reproducing one of its failures loads it too.

1. urllib3-future. This project's dependencies install urllib3-future (grafana-client ->
   niquests) in urllib3's place, and Schemathesis 4.32.5's requests transport relies on two
   details of urllib3 itself when it sends a request once more that lost its kept-alive
   connection before any answer (only when no connection was opened meanwhile): it counts
   opened connections through ``PoolManager.pools.keys()`` (urllib3-future's ``pools`` is a
   ``TrafficPolice`` without ``keys()``: every request of a run failed with "'TrafficPolice'
   object has no attribute 'keys'"), and it recognises the drop by urllib3's
   ``ProtocolError("Connection aborted.", RemoteDisconnected(...))`` (urllib3-future raises
   ``ProtocolError("Remote end closed connection without response")`` caused by the
   ``ConnectionResetError``). Here both work as they do with urllib3.

2. The run's API token, renewed. The run reads its own token's id from ``GET /tokens`` and
   revokes it with ``DELETE /tokens/{id}``, as it should; every later request would be a 401
   and the rest of the run would test nothing. With ``HOURGLASS_CONTRACT_TOKEN`` set, the token
   comes from this auth provider instead of ``-H``: that token first, then, each time a
   request is answered 401, a new one made as a person makes one (sign in on the role's login
   page, ``POST /api/v1/tokens`` with the session and its CSRF token), and the request is sent
   again with it (Schemathesis's re-authentication).
"""

import os
import re
from http.client import RemoteDisconnected

import requests
import schemathesis
from requests.adapters import HTTPAdapter
from schemathesis.transport import requests as transport
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ProtocolError

# --- 1. urllib3-future -------------------------------------------------------------------

DROPPED = (RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_new_conn = HTTPConnectionPool._new_conn
_dropped_with_urllib3 = transport._is_dropped_before_response


def _counted_new_conn(pool, *args, **kwargs):
    # urllib3's ``num_connections`` only grows; urllib3-future's also falls when a connection
    # is discarded, so the count of connections ever opened is kept beside it.
    pool.opened_ever = getattr(pool, "opened_ever", 0) + 1
    return _new_conn(pool, *args, **kwargs)


def _pools(manager):
    pools = manager.pools
    if hasattr(pools, "keys"):  # urllib3 itself: the dict-like container
        return [pools.get(key) for key in pools.keys()]  # noqa: SIM118 (not iterable)
    with pools._lock:  # urllib3-future's TrafficPolice: every pool it administers
        return list(pools._registry.values())


def _count_opened_connections(session):
    total = 0
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            for manager in (adapter.poolmanager, *adapter.proxy_manager.values()):
                total += sum(getattr(pool, "opened_ever", pool.num_connections)
                             for pool in _pools(manager) if pool is not None)
    return total


def _is_dropped_before_response(exc):
    if _dropped_with_urllib3(exc):
        return True
    reason = exc.args[0] if exc.args else None
    return (isinstance(reason, ProtocolError) and len(reason.args) == 1
            and isinstance(reason.__cause__, DROPPED))


if not hasattr(HTTPConnectionPool, "_count_opened_connections_patched"):
    HTTPConnectionPool._new_conn = _counted_new_conn
    HTTPConnectionPool._count_opened_connections_patched = True
transport._count_opened_connections = _count_opened_connections
transport._is_dropped_before_response = _is_dropped_before_response

# --- 2. the run's API token, renewed -----------------------------------------------------

LOGIN = {"miner": "/miner/login", "renter": "/login"}
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')


class RenewedToken:
    """``HOURGLASS_CONTRACT_TOKEN`` until a request is answered 401, then new ones, made with
    the account ``HOURGLASS_CONTRACT_USER`` (``HOURGLASS_CONTRACT_ROLE``, password
    ``HOURGLASS_CONTRACT_PASSWORD``) on the server at ``HOURGLASS_CONTRACT_URL``."""

    def __init__(self):
        self.first = os.environ["HOURGLASS_CONTRACT_TOKEN"]
        self.url = os.environ["HOURGLASS_CONTRACT_URL"]
        self.session = None
        self.made = 0

    def get(self, case, context):
        if self.first is not None:
            token, self.first = self.first, None
            return token
        return self._new_token()

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    def _signed_in(self):
        session = requests.Session()
        login = self.url + LOGIN[os.environ["HOURGLASS_CONTRACT_ROLE"]]
        page = session.get(login, timeout=30)
        home = session.post(login, timeout=30, data={
            "name": os.environ["HOURGLASS_CONTRACT_USER"],
            "password": os.environ["HOURGLASS_CONTRACT_PASSWORD"],
            "csrf_token": CSRF_FIELD.search(page.text).group(1)})
        if home.status_code != 200 or not CSRF_HEADER.search(home.text):
            raise RuntimeError(f"signing in for a new API token failed: {home.status_code}")
        session.headers["X-CSRFToken"] = CSRF_HEADER.search(home.text).group(1)
        return session

    def _new_token(self):
        self.session = self.session or self._signed_in()
        self.made += 1
        made = self.session.post(f"{self.url}/api/v1/tokens", timeout=30,
                                 json={"name": f"contract-{self.made}"})
        if made.status_code != 201:
            raise RuntimeError(f"POST /api/v1/tokens: {made.status_code} {made.text}")
        return made.json()["secret"]


if os.environ.get("HOURGLASS_CONTRACT_TOKEN"):
    # Fetched once, and again only after a 401 (no run lasts an hour).
    schemathesis.auth(refresh_interval=3600)(RenewedToken)
