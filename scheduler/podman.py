"""The Podman container backend, through podman-py.

The only module that talks to Podman; the rest of Hourglass speaks of nodes
and replicas. Node discovery uses ``host_info`` (what a node is),
``run_probe`` (a throwaway container that reads the node's host paths) and
``list_connections`` (this user's ``podman system connection`` entries).
``PodmanBackend`` also implements the container backend seam
(``scheduler.backend``): replicas' containers, their events, logs and
consoles, and per-task networks.

Every replica's container runs without privileges: all capabilities
dropped, no-new-privileges, and Podman's ``catatonit`` as PID 1 (``init``)
so a stop's SIGTERM reaches the renter's program even when it installs no
handler, and zombies are reaped. Per-task networks are bridges with
``dns_enabled``: with netavark and aardvark-dns (Debian's podman 4.3 here),
containers on one resolve each other's names and aliases. They are also
``isolate``d: no route between two such networks, so put every task on its
own (a container on Podman's default network can still reach them by IP).
``canary`` runs a throwaway container with exactly those options, so a node
missing catatonit or netavark is found out before a renter's task is.

Every call has a timeout and its failure is the seam's: the engine's answer
(BackendError, ContainerGone, StartFailed) or no answer (NodeUnreachable,
which podman-py reports as an ``APIError`` without a response). At most
``CALLS_PER_NODE`` calls run at once per node, so a burst queues instead of
overwhelming the service, and a call the node refused or reset is made again
after a short wait; a create or start that may have reached the engine is
not: the caller looks the container up by name.
"""

import codecs
import json
import logging
import math
import random
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests
import urllib3
from podman import PodmanClient
from podman.api import stream_frames
from podman.errors import APIError, NotFound

from scheduler.backend import (
    INSTANCE_LABEL,
    NS,
    REPLICA_LABEL,
    BackendError,
    ContainerBackend,
    ContainerEvent,
    ContainerExists,
    ContainerGone,
    ContainerSpec,
    ContainerState,
    EngineBusy,
    ExecResult,
    NodeUnreachable,
    StartFailed,
    Timestamp,
)
from scheduler.ssh_tunnel import SCHEMES as SSH_SCHEMES
from scheduler.ssh_tunnel import TUNNELS

log = logging.getLogger(__name__)

PROBE_LABEL = "hourglass.probe"
CANARY_LABEL = "hourglass.canary"
CANARY_DEVICE = "/dev/null:/dev/hourglass-canary:rwm"
# Engine calls at once per node, by kind: a burst waits its turn instead of failing. Stops
# have their own (each may wait out a grace), so they never hold back the short calls.
CALLS_PER_NODE = {"short": 4, "stop": 8}
QUEUE_SECONDS = 60  # how long a call waits for its turn before the node counts as not answering
ATTEMPTS = 4  # tries of a call the node refused or reset (not of one that timed out)
BACKOFF = 0.05  # seconds before the second try; x4 before each further one
CPU_PERIOD_US = 100_000
MIB = 1024 * 1024
STATUSES = {"configured": "created", "created": "created", "initialized": "created",
            "running": "running", "stopping": "stopping", "paused": "paused",
            "exited": "exited", "stopped": "exited"}
OWN_TIMEOUT = object()  # PodmanBackend.client(): the backend's own timeout
EVENT_KINDS = {"create": "created", "start": "started", "died": "died", "remove": "removed"}
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

_gates: dict[tuple[str, str], threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


def _gate(url, kind):
    """The semaphore bounding ``kind`` calls to the node at ``url``, shared by every backend."""
    with _gates_lock:
        return _gates.setdefault((url, kind), threading.BoundedSemaphore(CALLS_PER_NODE[kind]))


def fix_for(message: str) -> str:
    """What a miner can do about a node whose canary failed with Podman's ``message``; ""
    when nothing is known."""
    lowered = message.lower()
    return next((fix for piece, fix in FIXES if piece in lowered), "")


@dataclass(frozen=True)
class HostInfo:
    """What a node's Podman says about its host. ``memory_bytes`` is the host's total memory."""

    hostname: str
    os_name: str
    kernel: str
    podman_version: str
    cpus: int
    memory_bytes: int
    images: tuple[str, ...] = ()  # tagged image names on the node, sorted


@dataclass(frozen=True)
class Connection:
    """One ``podman system connection`` entry: its name, URI and SSH identity file ("" if none)."""

    name: str
    url: str
    identity: str = ""


class ProbeImageMissing(Exception):
    """The node has no copy of the probe image (nothing is ever pulled)."""


class ProbeFailed(Exception):
    """The probe container ran but its script failed; the message holds its exit status."""


class PodmanBackend(ContainerBackend):
    """One Podman endpoint, reached at ``url`` (``unix:///path.sock``, ``tcp://``, ``ssh://``).

    ``timeout`` bounds each API call, in seconds (a stop adds its grace, a
    followed log has none); ``identity`` is the SSH key file for an
    ``ssh://`` URL (None: the one ``podman system connection list`` names, else
    ssh's own defaults). An ``ssh://`` node is reached
    through the local socket of its long-lived tunnel in ``tunnels``
    (``scheduler.ssh_tunnel``; default: the process's shared ones).
    """

    def __init__(self, url, timeout=5, identity=None, tunnels=None):
        self.url = url
        self.timeout = timeout
        self.identity = identity
        self.tunnels = tunnels or TUNNELS

    def client(self, timeout=OWN_TIMEOUT):
        """A new podman-py client; use it as a context manager. ``timeout``: seconds for each
        read (None: wait for ever), the backend's own when not given. For an ``ssh://`` node
        it starts the node's tunnel if needed (NodeUnreachable when ssh fails)."""
        timeout = self.timeout if timeout is OWN_TIMEOUT else timeout
        url = self.url
        if urlsplit(url).scheme in SSH_SCHEMES:
            url = f"unix://{self.tunnels.socket_for(url, self.identity)}"
        return PodmanClient(base_url=url, timeout=timeout)

    @contextmanager
    def _call(self, handle=None, timeout=OWN_TIMEOUT, gate="short"):
        """A client for one engine call, its errors as the seam's (see ``_engine_errors``).
        ``gate``: the kind of call, of which at most ``CALLS_PER_NODE[gate]`` run at once on
        this node while the others wait their turn; None for one that is not counted (an
        exec, whose caller waits for it)."""
        gate = _gate(self.url, gate) if gate else None
        if gate is not None and not gate.acquire(timeout=QUEUE_SECONDS):
            raise EngineBusy(f"no turn for a call to the node in {QUEUE_SECONDS} s")
        try:
            with _engine_errors(handle), self.client(timeout) as client:
                yield client
        finally:
            if gate is not None:
                gate.release()

    def _retry(self, call, sent_is_done=False):
        """``call()``, made again after a short, growing wait when the node refused or reset
        the connection (a busy service does), up to ``ATTEMPTS`` tries. A call that timed
        out is not made again; with ``sent_is_done`` (a create or a start) neither is one
        that may have reached the engine: its outcome is unknown, the caller looks."""
        for attempt in range(ATTEMPTS):
            try:
                return call()
            except NodeUnreachable as error:
                if (attempt == ATTEMPTS - 1 or error.timed_out
                        or (error.sent and sent_is_done)):
                    raise
                time.sleep(BACKOFF * 4 ** attempt * random.uniform(0.5, 1.5))

    def version(self):
        """The service's Podman version string; raises NodeUnreachable or BackendError."""
        def call():
            with self._call() as client:
                return client.version()["Version"]
        return self._retry(call)

    def host_info(self) -> HostInfo:
        """The node's host and its tagged images; raises when the service does not answer."""
        with self._call() as client:
            info = client.info()
            images = sorted({tag for image in client.images.list() for tag in image.tags})
        host = info.get("host", {})
        dist = host.get("distribution") or {}
        os_name = " ".join(str(dist.get(k, "")) for k in ("distribution", "version")).strip()
        if os_name and dist.get("codename"):
            os_name += f" ({dist['codename']})"
        return HostInfo(
            hostname=host.get("hostname", ""),
            os_name=(os_name[:1].upper() + os_name[1:]) or host.get("os", ""),
            kernel=host.get("kernel", ""),
            podman_version=(info.get("version") or {}).get("Version", ""),
            cpus=int(host.get("cpus") or 0),
            memory_bytes=int(host.get("memTotal") or 0),
            images=tuple(images),
        )

    def run_probe(self, image: str, script: str, mounts: Sequence[tuple[str, str]]) -> str:
        """Run ``script`` with ``/bin/sh -c`` in a throwaway container of ``image``; its stdout.

        ``mounts`` are (host path, container path) pairs, bound read-only; one
        whose host path the node lacks is left out (Podman names such a path
        in its error, one at a time), so the probe works on any host. No
        network, every capability dropped, no-new-privileges, a read-only root
        and few processes; the container is removed whatever happens. Raises
        ProbeImageMissing, ProbeFailed (non-zero exit), NodeUnreachable or BackendError.
        """
        with self._call() as client:
            if not client.images.exists(image):
                raise ProbeImageMissing(image)
            container = self._create_probe(client, image, script, list(mounts))
            try:
                container.start()
                status = container.wait()
                out = b"".join(container.logs(stdout=True, stderr=False))
                if status != 0:
                    err = b"".join(container.logs(stdout=False, stderr=True))
                    last = err.decode(errors="replace").strip().splitlines()[-1:]
                    raise ProbeFailed(f"probe exited with {status}: {' '.join(last)}".strip())
                return out.decode(errors="replace")
            finally:
                container.remove(force=True)

    @staticmethod
    def _create_probe(client, image, script, mounts):
        while True:
            try:
                return client.containers.create(
                    image, entrypoint=["/bin/sh", "-c"], command=[script],
                    mounts=[{"type": "bind", "source": host, "target": inside, "read_only": True}
                            for host, inside in mounts],
                    network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                    read_only=True, pids_limit=64, labels={PROBE_LABEL: "1"})
            except APIError as error:
                absent = [m for m in mounts if f"{m[0]}: no such file or directory" in str(error)]
                if not absent:
                    raise
                mounts.remove(absent[0])

    def import_image(self, tarball, image: str, changes: Sequence[str] = ()) -> None:
        """Make ``image`` on the node from a root file system ``tarball`` (``podman import``,
        with Containerfile ``changes`` such as ``CMD ["/bin/sh"]``)."""
        with self._call(timeout=60) as client, open(tarball, "rb") as data:
            response = client.api.post("/images/import", data=data,
                                       params={"reference": image, "changes": list(changes)},
                                       headers={"Content-Type": "application/x-tar"})
            response.raise_for_status()

    # --- the container backend seam (scheduler.backend) ---------------------------------

    def start(self, spec: ContainerSpec) -> str:
        self._retry(lambda: self._create(spec), sent_is_done=True)
        self._retry(lambda: self._start_created(spec.name), sent_is_done=True)
        return spec.name

    def _create(self, spec):
        with self._call(spec.name) as client:
            try:
                client.containers.create(spec.image, **_create_args(spec))
            except APIError as error:
                if error.response is None:  # no answer: _engine_errors says so
                    raise
                if client.containers.exists(spec.name):
                    raise ContainerExists(spec.name) from error
                raise StartFailed(_message(error)) from error

    def _start_created(self, name):
        with self._call(name) as client:
            response = client.api.post(f"/containers/{quote(name, safe='')}/start")
            if response.status_code == 304:  # already started
                return
            try:
                response.raise_for_status()
            except APIError as error:
                try:
                    client.containers.remove(name, force=True)
                except APIError:  # the orphan sweep removes it later
                    log.info("removing %s after its failed start failed", name)
                raise StartFailed(_message(error)) from error

    def stop(self, handle: str, grace: int) -> None:
        grace = max(0, math.ceil(grace))

        def call():
            with self._call(handle, gate="stop") as client:
                response = client.api.post(f"/containers/{quote(handle, safe='')}/stop",
                                           params={"timeout": grace},
                                           timeout=grace + self.timeout)
                if response.status_code != 404:  # 304: already stopped
                    response.raise_for_status()
        self._retry(call)

    def inspect(self, handle: str) -> ContainerState | None:
        def call():
            with self._call(handle) as client:
                try:
                    return _state(client.containers.get(handle).attrs)
                except NotFound:
                    return None
        return self._retry(call)

    def list_ours(self, instance: str, running_only: bool = False) -> list[ContainerState]:
        # podman-py takes several values of one filter only as a list of "key=value" strings
        labels = [f"label={REPLICA_LABEL}", f"label={INSTANCE_LABEL}={instance}"]

        def call():
            with self._call() as client:
                return [_listed(found.attrs) for found in
                        client.containers.list(all=not running_only, filters=labels)]
        return self._retry(call)

    def list_networks(self, instance: str) -> dict[str, Mapping[str, str]]:
        def call():
            with self._call() as client:
                return {network.name: dict(network.attrs.get("labels") or {}) for network in
                        client.networks.list(filters={"label": f"{INSTANCE_LABEL}={instance}"})}
        return self._retry(call)

    def canary(self, image: str, instance: str, suffix: str = "") -> None:
        name = f"hourglass-{instance}-canary{suffix}"
        spec = ContainerSpec(
            instance=instance, replica=0, task=0, subtask=0, user=0, image=image,
            argv=("/bin/sh", "-c", "exit 0"), cpu_millis=100, memory_mib=16,
            devices=(CANARY_DEVICE,), network=name, hostname="canary", aliases=("canary",))
        args = {**_create_args(spec), "name": name,
                "labels": {INSTANCE_LABEL: instance, CANARY_LABEL: "1"}}
        self.remove(name)  # one an interrupted canary left
        try:
            if not self.ensure_network(name, {INSTANCE_LABEL: instance, CANARY_LABEL: "1"}):
                raise StartFailed("task networks have no DNS: the replicas of a task would "
                                  "not find each other by name")
            with self._call(name) as client:
                try:
                    container = client.containers.create(image, **args)
                    container.start()
                    code = container.wait()
                except APIError as error:
                    if error.response is None:
                        raise
                    raise StartFailed(_message(error)) from error
                if code != 0:
                    err = b"".join(container.logs(stdout=False, stderr=True))
                    last = " ".join(err.decode(errors="replace").strip().splitlines()[-1:])
                    raise StartFailed(f"a container like a replica's exited with {code}: "
                                      f"{last}".strip(" :"))
        finally:
            try:
                self.remove(name)
                self.remove_network(name)
            except BackendError as error:  # the next canary removes it
                log.debug("removing the canary on %s: %s", self.url, error)

    def events(self, since_ns: int | None = None, idle: float = 5.0) -> Iterator[ContainerEvent]:
        # Podman's own "since" is not exact to the nanosecond: ask from a second earlier and
        # drop what is not after since_ns here.
        params = {"stream": "true", "filters": json.dumps({"type": ["container"]})}
        if since_ns is not None:
            params["since"] = str(since_ns // NS - 1)
        with self.client(timeout=idle) as client, _engine_errors():
            response = client.api.get("/events", params=params, stream=True)
            response.raise_for_status()
            try:
                for line in response.iter_lines():
                    event = _event(json.loads(line)) if line.strip() else None
                    if event is not None and (since_ns is None or event.at.ns > since_ns):
                        yield event
            except requests.ConnectionError as error:
                if not _read_timed_out(error):
                    raise
            finally:
                response.close()

    def logs(self, handle: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        with self.client() as client, _engine_errors(handle):
            client.containers.get(handle)
        return self._log_chunks(handle, follow, "all" if tail is None else int(tail))

    def _log_chunks(self, handle, follow, tail):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        params = {"stdout": "true", "stderr": "true", "follow": str(follow).lower(), "tail": tail}
        with self.client(timeout=None if follow else self.timeout) as client, \
                _engine_errors(handle):
            response = client.api.get(f"/containers/{quote(handle, safe='')}/logs",
                                      params=params, stream=True)
            response.raise_for_status()
            try:
                for frame in stream_frames(response):
                    if text := decoder.decode(frame):
                        yield text
            finally:
                response.close()
        if rest := decoder.decode(b"", final=True):
            yield rest

    def exec(self, handle: str, argv: Sequence[str], timeout: float = 30.0) -> ExecResult:
        with self._call(handle, timeout=timeout, gate=None) as client:
            container = client.containers.get(handle)
            code, (out, err) = container.exec_run(list(argv), demux=True)
        return ExecResult(code, (out or b"").decode(errors="replace"),
                          (err or b"").decode(errors="replace"))

    def remove(self, handle: str) -> None:
        def call():
            with self._call(handle) as client:
                response = client.api.delete(f"/containers/{quote(handle, safe='')}",
                                             params={"force": "true", "timeout": 0})
                if response.status_code != 404:
                    response.raise_for_status()
        self._retry(call)

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        def call():
            with self._call() as client:
                try:
                    network = client.networks.create(name, driver="bridge", dns_enabled=True,
                                                     options={"isolate": "true"},
                                                     labels=dict(labels))
                except APIError:
                    if not client.networks.exists(name):
                        raise
                    network = client.networks.get(name)
            return bool(network.attrs.get("dns_enabled"))
        return self._retry(call)

    def remove_network(self, name: str) -> None:
        def call():
            with self._call() as client:
                try:
                    client.networks.remove(name)
                except NotFound:
                    return
        self._retry(call)


def _create_args(spec: ContainerSpec) -> dict:
    """podman-py ``containers.create`` keywords for ``spec``: limits, devices, binds, labels,
    and never privileged. ``nano_cpus`` is not used: podman-py 5.8 drops it silently."""
    args = {
        "name": spec.name, "entrypoint": [spec.argv[0]], "command": list(spec.argv[1:]),
        "environment": dict(spec.env), "labels": spec.all_labels,
        "hostname": spec.hostname or spec.name,
        "cpu_period": CPU_PERIOD_US, "cpu_quota": spec.cpu_millis * CPU_PERIOD_US // 1000,
        "mem_limit": spec.memory_mib * MIB, "memswap_limit": spec.memory_mib * MIB,
        "pids_limit": spec.pids_limit, "devices": list(spec.devices),
        "mounts": [{"type": "bind", "source": host, "target": inside, "read_only": read_only}
                   for host, inside, read_only in spec.mounts],
        "privileged": False, "cap_drop": ["ALL"], "no_new_privileges": True, "init": True,
    }
    if spec.working_dir:
        args["working_dir"] = spec.working_dir
    if spec.network:
        args["networks"] = {spec.network: {"aliases": list(spec.aliases)}}
    if spec.shm_mib:
        args["shm_size"] = spec.shm_mib * MIB
    if spec.ports:
        args["ports"] = {f"{port}/tcp": port for port in spec.ports}
    return args


def _state(attrs: dict) -> ContainerState:
    """A ContainerState from libpod's inspect of one container."""
    state = attrs.get("State") or {}
    status = STATUSES.get(str(state.get("Status", "")).lower(), "unknown")
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return ContainerState(
        handle=str(attrs.get("Name", "")).lstrip("/"),
        status=status,
        exit_code=int(state.get("ExitCode") or 0) if status == "exited" else None,
        started=Timestamp.parse(state.get("StartedAt") or "0001-01-01T00:00:00Z"),
        finished=(Timestamp.parse(state.get("FinishedAt") or "0001-01-01T00:00:00Z")
                  if status == "exited" else None),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        addresses={net: info["IPAddress"] for net, info in networks.items()
                   if info.get("IPAddress")},
    )


def _listed(attrs: dict) -> ContainerState:
    """A ContainerState, without times, from one entry of libpod's container list."""
    status = STATUSES.get(str(attrs.get("State", "")).lower(), "unknown")
    names = attrs.get("Names") or [""]
    return ContainerState(
        handle=str(names[0]).lstrip("/"), status=status,
        exit_code=int(attrs.get("ExitCode") or 0) if status == "exited" else None,
        started=None, finished=None, labels=dict(attrs.get("Labels") or {}))


def _event(data: dict) -> ContainerEvent | None:
    """A ContainerEvent from one line of Podman's event stream; None when it is not about one
    of our replicas' containers or not a kind we follow. Podman 4.3 puts the container's
    labels in ``Actor.Attributes`` (its own label filter matched nothing there)."""
    kind = EVENT_KINDS.get(data.get("Action") or data.get("status") or "")
    attributes = (data.get("Actor") or {}).get("Attributes") or {}
    if data.get("Type") != "container" or kind is None or REPLICA_LABEL not in attributes:
        return None
    code = attributes.get("containerExitCode")
    return ContainerEvent(
        handle=str(attributes.get("name", "")),
        kind=kind,
        at=Timestamp.from_ns(int(data.get("timeNano") or int(data.get("time", 0)) * NS)),
        labels={k: v for k, v in attributes.items() if k.startswith("hourglass.")},
        exit_code=int(code) if kind == "died" and code is not None else None,
    )


@contextmanager
def _engine_errors(handle=None):
    """Podman's and the transport's errors as the seam's: NotFound is ContainerGone (when a
    container ``handle`` is at stake), other refusals BackendError, no answer NodeUnreachable.

    podman-py reports a refused or reset connection, or a timeout, as an ``APIError`` with
    no response ("GET operation failed"): only one with a response is the engine's answer.
    """
    try:
        yield
    except NotFound as error:
        if handle is None:
            raise BackendError(_message(error)) from error
        raise ContainerGone(handle) from error
    except APIError as error:
        if error.response is None:
            raise _unreachable(error) from error
        raise BackendError(_message(error)) from error
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        raise _unreachable(error) from error


NOT_SENT = (ConnectionRefusedError, FileNotFoundError, urllib3.exceptions.NewConnectionError,
            requests.ConnectTimeout)
TIMED_OUT = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


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


def _message(error: APIError) -> str:
    return str(error.explanation or error)


def _read_timed_out(error: requests.ConnectionError) -> bool:
    """True when a streamed read gave up waiting (requests wraps urllib3's ReadTimeoutError)."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args)


def list_connections(timeout=10) -> list[Connection]:
    """This user's ``podman system connection list`` (the ``podman`` command, no shell).

    Raises OSError when podman is not installed, CalledProcessError or
    TimeoutExpired when it fails, ValueError when its output is not JSON.
    """
    result = subprocess.run(["podman", "system", "connection", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, timeout=timeout)
    entries = json.loads(result.stdout or "[]") or []
    return [Connection(str(e["Name"]), str(e["URI"]), str(e.get("Identity") or ""))
            for e in entries]
