"""Podman's errors and the transport's, as the backend seam's exceptions and in words.

``engine_errors`` turns what podman-py and requests raise into the seam's
exceptions: the engine's answer (BackendError, ContainerGone) or no answer
(NodeUnreachable, which podman-py reports as an ``APIError`` without a response).
``error_chain`` and ``error_text`` put a failure in a node's reason; ``fix_for`` says
what a miner can do about a canary's known failures.
"""

from contextlib import contextmanager

import requests
import urllib3
from podman.errors import APIError, NotFound

from scheduler.backend import BackendError, ContainerGone, NodeUnreachable

# What to do about a canary's failure, by a piece of Podman's message (see ``fix_for``).
FIXES = (
    ("container-init binary not found",
     "install catatonit on the node (apt-get install catatonit)"),
    ("netavark", "install netavark, aardvark-dns and iptables on the node"),
    ("aardvark", "install aardvark-dns on the node"),
    ("iptables", "install iptables on the node"),
    ("no dns", "install netavark and aardvark-dns on the node (and use the netavark network "
               "backend)"),
    ("cgroups in hybrid mode", "use runc: runtime = \"runc\" under [engine] in containers.conf "
                               "(apt-get install runc)"),
    ("rlimit", "lower default_ulimits in containers.conf to the host's hard limits "
               "(ulimit -Hn, ulimit -Hu)"),
    ("executable file not found", "install the OCI runtime containers.conf names (runc)"),
)
NOT_SENT = (ConnectionRefusedError, FileNotFoundError, urllib3.exceptions.NewConnectionError,
            requests.ConnectTimeout)
TIMED_OUT = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def fix_for(message: str) -> str:
    """What a miner can do about a node whose canary failed with Podman's ``message``; ""
    when nothing is known."""
    lowered = message.lower()
    return next((fix for piece, fix in FIXES if piece in lowered), "")


@contextmanager
def engine_errors(handle=None):
    """Podman's and the transport's errors as the seam's: NotFound is ContainerGone (when a
    container ``handle`` is at stake), other refusals BackendError, no answer NodeUnreachable.

    podman-py reports a refused or reset connection, or a timeout, as an ``APIError`` with
    no response ("GET operation failed"): only one with a response is the engine's answer.
    """
    try:
        yield
    except NotFound as error:
        if handle is None:
            raise BackendError(api_message(error)) from error
        raise ContainerGone(handle) from error
    except APIError as error:
        if error.response is None:
            raise _unreachable(error) from error
        raise BackendError(api_message(error)) from error
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _unreachable(error) from error


def api_message(error: APIError) -> str:
    """The engine's own words for a refusal."""
    return str(error.explanation or error)


def read_timed_out(error: requests.ConnectionError) -> bool:
    """True when a streamed read gave up waiting (requests wraps urllib3's ReadTimeoutError)."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def error_chain(error):
    """``error`` and its causes, the first cause last."""
    chain = [error]
    while (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


def error_text(error):
    """An error's words on one line: an OSError's own ("Connection refused"), else its text,
    else its type's name."""
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return " ".join(text.split()) or type(error).__name__


def _unreachable(error):
    """The NodeUnreachable for a transport failure; its message is the first cause's."""
    chain = error_chain(error)
    return NodeUnreachable(error_text(chain[-1])[:300],
                           sent=not any(isinstance(e, NOT_SENT) for e in chain),
                           timed_out=any(isinstance(e, TIMED_OUT) for e in chain))
