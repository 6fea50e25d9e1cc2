"""This user's Podman connections: the nodes ``podman system connection`` names.

Node discovery makes one node of each entry; the SSH identity file an entry names is how
its ``ssh://`` node is reached (``scheduler.ssh_tunnel``). The list is the ``podman``
command's own configuration, which no Podman service serves: it is read by running
``podman system connection list`` (no shell), the one thing here that is no API call.
"""

import json
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Connection:
    """One ``podman system connection`` entry: its name, URI and SSH identity file ("" if none)."""

    name: str
    url: str
    identity: str = ""


def list_connections(timeout=10) -> list[Connection]:
    """This user's ``podman system connection list``.

    Raises OSError when podman is not installed, CalledProcessError or
    TimeoutExpired when it fails, ValueError when its output is not JSON.
    """
    result = subprocess.run(["podman", "system", "connection", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, timeout=timeout)
    entries = json.loads(result.stdout or "[]") or []
    return [Connection(str(e["Name"]), str(e["URI"]), str(e.get("Identity") or ""))
            for e in entries]


def identity_for(url: str) -> str | None:
    """The identity file the connection for ``url`` names; None if none, or when the list
    cannot be read."""
    try:
        connections = list_connections()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return next((c.identity for c in connections if c.url == url and c.identity), None)
