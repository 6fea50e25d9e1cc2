"""How every call reaches a Podman service: a podman-py client per call, bounded and retried.

``PodmanEndpoint`` is one service at a URL (``unix://``, ``tcp://``, ``ssh://``); an
``ssh://`` one is reached through the local socket of its long-lived tunnel
(``scheduler.ssh_tunnel``). Every call has a timeout and its failure is the seam's
(``scheduler.podman_errors``). At most ``CALLS_PER_NODE`` calls run at once per node,
so a burst queues instead of overwhelming the service, and a call the node refused or
reset is made again after a short wait; a create or start that may have reached the
engine is not: the caller looks the container up by name.
"""

import random
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

from podman import PodmanClient

from scheduler.backend import BackendError, EngineBusy, NodeUnreachable
from scheduler.podman_errors import engine_errors
from scheduler.ssh_tunnel import SCHEMES as SSH_SCHEMES
from scheduler.ssh_tunnel import TUNNELS

# Engine calls at once per node, by kind: a burst waits its turn instead of failing. Stops
# have their own (each may wait out a grace), so they never hold back the short calls.
CALLS_PER_NODE = {"short": 4, "stop": 8}
QUEUE_SECONDS = 60  # how long a call waits for its turn before the node counts as not answering
ATTEMPTS = 4  # tries of a call the node refused or reset (not of one that timed out)
BACKOFF = 0.05  # seconds before the second try; x4 before each further one
OWN_TIMEOUT = object()  # PodmanEndpoint.client(): the endpoint's own timeout

_gates: dict[tuple[str, str], threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


def _gate(url, kind):
    """The semaphore bounding ``kind`` calls to the node at ``url``, shared by every backend."""
    with _gates_lock:
        return _gates.setdefault((url, kind), threading.BoundedSemaphore(CALLS_PER_NODE[kind]))


class PodmanEndpoint:
    """One Podman service, reached at ``url`` (``unix:///path.sock``, ``tcp://``, ``ssh://``).

    ``timeout`` bounds each API call, in seconds; ``identity`` is the SSH key file for an
    ``ssh://`` URL (None: the one its tunnel was given before, else the one its
    ``podman system connection`` entry names, else ssh's own defaults). An ``ssh://``
    node is reached through the local socket of its long-lived tunnel in ``tunnels``
    (default: the process's shared ones).
    """

    def __init__(self, url, timeout=5, identity=None, tunnels=None):
        self.url = url
        self.timeout = timeout
        self.identity = identity
        self.tunnels = tunnels or TUNNELS

    def client(self, timeout=OWN_TIMEOUT):
        """A new podman-py client; use it as a context manager. ``timeout``: seconds for each
        read (None: wait for ever), the endpoint's own when not given. For an ``ssh://``
        node it starts the node's tunnel if needed (NodeUnreachable when ssh fails)."""
        timeout = self.timeout if timeout is OWN_TIMEOUT else timeout
        url = self.url
        if urlsplit(url).scheme in SSH_SCHEMES:
            url = f"unix://{self.tunnels.socket_for(url, self.identity)}"
        return PodmanClient(base_url=url, timeout=timeout)

    @contextmanager
    def call(self, handle=None, timeout=OWN_TIMEOUT, gate="short"):
        """A client for one engine call, its errors as the seam's (``engine_errors``, with
        ``handle`` the container at stake). ``gate``: the kind of call, of which at most
        ``CALLS_PER_NODE[gate]`` run at once on this node while the others wait their turn;
        None for one that is not counted (an exec or a console's, whose caller waits)."""
        gate = _gate(self.url, gate) if gate else None
        if gate is not None and not gate.acquire(timeout=QUEUE_SECONDS):
            raise EngineBusy(f"no turn for a call to the node in {QUEUE_SECONDS} s")
        try:
            with engine_errors(handle), self.client(timeout) as client:
                yield client
        finally:
            if gate is not None:
                gate.release()

    def retry(self, attempt, sent_is_done=False):
        """``attempt()``, made again after a short, growing wait when the node refused or reset
        the connection (a busy service does), up to ``ATTEMPTS`` tries. A call that timed
        out is not made again; with ``sent_is_done`` (a create or a start) neither is one
        that may have reached the engine: its outcome is unknown, the caller looks."""
        for tried in range(ATTEMPTS):
            try:
                return attempt()
            except NodeUnreachable as error:
                if (tried == ATTEMPTS - 1 or error.timed_out
                        or (error.sent and sent_is_done)):
                    raise
                time.sleep(BACKOFF * 4 ** tried * random.uniform(0.5, 1.5))

    def version(self):
        """The service's Podman version string; raises NodeUnreachable or BackendError."""
        def attempt():
            with self.call() as client:
                return client.version()["Version"]
        return self.retry(attempt)

    def ping(self):
        """Whether the service answers, asked once and never queued (a readiness check)."""
        try:
            with self.call(gate=None) as client:
                return client.ping()
        except BackendError:
            return False
