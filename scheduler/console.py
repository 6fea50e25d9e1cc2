"""Replicas' logs and web consoles on any node, for the portal's pages.

``Containers`` is what ``app.py`` puts in ``app.extensions["hourglass.containers"]``:
the portal (which never imports ``scheduler``) reads and follows a replica's log
and opens a shell in it, naming the node by its URL and the container by its
handle (``Replica.node.url``, ``Replica.container``).

A log read to its end, and a console's exec session (made, resized, looked at, hung
up), go through the node's ``PodmanBackend``; the terminal's two-way stream and the
followed log take a connection of their own (``scheduler.podman_streams``).

Podman keeps an exec session's processes running when its connection closes,
so the console's command first prints its PID (``sh -c 'echo $$; exec "$0"
"$@"' ARGV...``: the argv is passed as arguments, never parsed by a shell) and
``Console.close`` sends that process SIGHUP, as closing a terminal window
does; the kernel then hangs up its foreground job too. Both need ``/bin/sh``
in the image.

``unix://``, ``tcp://`` and ``ssh://`` nodes (the latter through their long-lived SSH
tunnels, ``scheduler.ssh_tunnel``) work the same.
"""

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from urllib.parse import quote

from scheduler.backend import BackendError, ContainerGone, NodeUnreachable
from scheduler.podman import PodmanBackend
from scheduler.podman_streams import READ, follow_log, start_terminal
from scheduler.ssh_tunnel import TUNNELS, Tunnels

TERM = "xterm-256color"
PID_WRAPPER = ("/bin/sh", "-c", 'echo "$$"; exec "$0" "$@"')


class Console:
    """A shell's terminal in a running container: bytes in, bytes out.

    ``recv`` blocks until output comes and returns b"" once the shell has ended
    or the console is closed; one thread may ``recv`` while another ``send``s;
    ``close`` may come from any thread and wakes a blocked ``recv``.
    """

    def __init__(self, backend, exec_id, pid, sock, pending):
        self.exec_id, self.pid = exec_id, pid
        self._backend = backend
        self._sock, self._pending = sock, pending
        self._closed = threading.Event()

    def send(self, data: bytes) -> None:
        """Type ``data``; dropped once the shell has ended (``recv`` tells that)."""
        try:
            self._sock.sendall(data)
        except OSError:
            pass

    def recv(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return self._sock.recv(READ)
        except OSError:
            return b""

    def resize(self, rows: int, cols: int) -> None:
        """Tell the terminal its new size, in character cells."""
        _api(self._backend, "post", f"/exec/{self.exec_id}/resize",
             params={"h": int(rows), "w": int(cols)})

    def close(self) -> None:
        """End the connection, and hang up the shell if it still runs (blocks for a few
        short API calls). Closing twice is harmless."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            session = _api(self._backend, "get", f"/exec/{self.exec_id}/json")
            if session["Running"]:
                # SIGHUP to the console's process (a number Podman's shell printed, not
                # one anybody typed), from an exec of its own.
                self._backend.exec(session["ContainerID"],
                                   ["/bin/sh", "-c", 'kill -HUP "$1"', "sh", str(self.pid)],
                                   timeout=self._backend.timeout)
        except BackendError:
            pass  # the container or its node is gone, and the shell with it


class Containers:
    """Logs and consoles of containers on any node, named by the node's URL.

    ``Error`` is the one exception its verbs raise, ``Gone`` the one for a
    container that does not exist, so a caller outside ``scheduler`` catches
    ``containers.Error`` without importing it. ``timeout`` bounds each API
    call, in seconds; a followed log yields "" after ``idle`` quiet seconds.
    ``tunnels`` reach ``ssh://`` nodes (default: the process's shared ones).
    """

    Error = BackendError
    Gone = ContainerGone

    def __init__(self, timeout=5.0, idle=10.0, tunnels: Tunnels | None = None):
        self.timeout = timeout
        self.idle = idle
        self.tunnels = tunnels or TUNNELS

    def backend(self, node_url: str) -> PodmanBackend:
        """The backend of the node at ``node_url``, with this object's timeout and tunnels."""
        return PodmanBackend(node_url, self.timeout, tunnels=self.tunnels)

    def logs(self, node_url: str, container: str, follow: bool = False,
             tail: int | None = None) -> Iterator[str]:
        """The container's output (stdout and stderr) as text chunks, the last ``tail`` lines
        (None: all). The container is looked up at once (Gone).

        With ``follow`` it goes on until the container stops, yielding "" after
        every ``idle`` seconds without output so the caller can keep its own
        connection alive or give up; closing the iterator ends the read at once.
        Podman (4.3 at least) sends the followed log's answer only with the
        container's first output, so the container is looked up by itself first,
        and the iterator waits for that answer as for output (a refusal then
        raises Error from the iterator).
        """
        backend = self.backend(node_url)
        if not follow:
            return backend.logs(container, tail=tail)
        _api(backend, "get", f"/containers/{quote(container, safe='')}/json", handle=container)
        return follow_log(backend, container, tail, self.idle)

    def open_console(self, node_url: str, container: str, argv: Sequence[str], rows: int = 24,
                     cols: int = 80) -> Console:
        """Start ``argv`` (no shell parses it) on a new terminal of ``rows`` x ``cols`` in the
        running container, as the container's user, with TERM=xterm-256color.
        Raises Gone, or Error when the container does not run or the node
        cannot be reached."""
        backend = self.backend(node_url)
        created = _api(backend, "post", f"/containers/{quote(container, safe='')}/exec",
                       {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                        "Tty": True, "Cmd": [*PID_WRAPPER, *argv], "Env": [f"TERM={TERM}"]},
                       handle=container)
        exec_id = created["Id"]
        sock, rest = start_terminal(backend, exec_id, container, rows, cols)
        try:
            while b"\n" not in rest:
                chunk = sock.recv(READ)
                if not chunk:
                    raise BackendError("the console's command ended at once")
                rest += chunk
        except OSError as error:
            sock.close()
            raise NodeUnreachable(str(error)) from error
        except BackendError:
            sock.close()
            raise
        first, rest = rest.split(b"\n", 1)
        if not first.strip().isdigit():
            sock.close()
            raise BackendError(f"the console needs /bin/sh in the image: {first[:200]!r}")
        sock.settimeout(None)
        return Console(backend, exec_id, int(first.strip()), sock, rest)


def _api(backend, method, path, body=None, handle=None, params=None):
    """One call for a console or a followed log through ``backend``'s podman-py client,
    never queued behind the scheduler's calls and made again only when it was never sent
    (an ``ssh://`` node's tunnel had just died); its JSON answer (None when empty). A 404
    is ContainerGone when ``handle`` names the container at stake; other refusals are
    BackendError."""
    def attempt():
        with backend.call(handle, gate=None) as client:
            response = getattr(client.api, method)(
                path, params=params, data=None if body is None else json.dumps(body))
            response.raise_for_status()
            return response.json() if response.content.strip() else None
    return backend.retry(attempt, sent_is_done=True)
