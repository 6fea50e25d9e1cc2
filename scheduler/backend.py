"""The container backend seam: how the scheduler starts, watches and stops replicas on a node.

The scheduler speaks to nodes only through ``ContainerBackend``, in Hourglass
words (replica, task, chips), so nothing of the container engine leaks above
it; ``scheduler.podman.PodmanBackend`` is the implementation, and a
Kubernetes backend could be another. JupyterHub's Spawner is the model: a
handful of verbs, and a handle (the container's name, ``hourglass-<instance
id>-r<replica id>``) that is all the state a replica needs to be found again
after a restart. Containers are always looked up by name or label, never by a
cached engine id. The instance id belongs to one Hourglass database, so two
installs (or two test runs) sharing one Podman never take each other's
containers for their own.

Times are the engine's own: ``Timestamp`` keeps the raw text (to the
nanosecond), integer nanoseconds since the epoch (what ``Replica.started_ns``
stores, exact for billing) and a naive UTC datetime (to the microsecond).
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scheduler.accelerators import Chip, plugin_for

INSTANCE_LABEL = "hourglass.instance"
REPLICA_LABEL = "hourglass.replica"
TASK_LABEL = "hourglass.task"
SUBTASK_LABEL = "hourglass.subtask"
USER_LABEL = "hourglass.user"
SLURM_JOB_LABEL = "hourglass.slurm-job"  # a Slurm pool's job id (scheduler/slurm_epilog.sh)

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1)
TIME_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def container_name(instance: str, replica_id: int) -> str:
    """The container's name, and the replica's handle, for replica ``replica_id`` of the
    Hourglass database whose instance id is ``instance``."""
    return f"hourglass-{instance}-r{replica_id}"


def network_name(instance: str, task_id: int) -> str:
    """The name of task ``task_id``'s network on a node."""
    return f"hourglass-{instance}-t{task_id}"


def replica_of(labels: Mapping[str, str]) -> int | None:
    """The replica id a container's ``hourglass.replica`` label names; None when none does."""
    value = labels.get(REPLICA_LABEL, "")
    return int(value) if value.isdigit() else None


@dataclass(frozen=True)
class Timestamp:
    """A moment as the engine reported it: ``raw`` text and ``ns`` since the epoch (UTC)."""

    raw: str
    ns: int

    @property
    def at(self) -> datetime:
        """Naive UTC, like ``portal.models.utcnow()``; truncated to the microsecond."""
        return EPOCH + timedelta(microseconds=self.ns // 1000)

    @classmethod
    def parse(cls, raw: str) -> "Timestamp | None":
        """An RFC 3339 time with up to 9 fractional digits; None for Go's zero time (year 1),
        which the engine reports for "never" (e.g. FinishedAt of a running container).
        Raises ValueError for any other text."""
        match = TIME_RE.fullmatch(raw.strip())
        if not match:
            raise ValueError(f"not an RFC 3339 time: {raw!r}")
        whole, fraction, zone = match.groups()
        if whole.startswith("0001-"):
            return None
        zone = "+00:00" if zone == "Z" else zone
        seconds = int(datetime.fromisoformat(whole + zone).timestamp())
        return cls(raw, seconds * NS + int((fraction or "0").ljust(9, "0")))

    @classmethod
    def from_ns(cls, ns: int) -> "Timestamp":
        """From nanoseconds since the epoch (an event's ``timeNano``); ``raw`` is RFC 3339 UTC."""
        whole = datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return cls(f"{whole}.{ns % NS:09d}Z", ns)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one replica's container; nothing here passes through a shell.

    ``argv`` replaces the image's entrypoint and command. ``cpu_millis`` (1000
    = one CPU), ``memory_mib`` (also the memory+swap ceiling) and
    ``pids_limit`` are hard limits. ``devices`` are ``"HOST:CONTAINER:rwm"``
    strings or CDI names (see ``attach_chips``); ``mounts`` are (host path,
    container path, read only) binds. ``network`` is a per-task network made
    with ``ensure_network`` (None: the node's default network), where the
    container answers to its name, ``hostname`` and ``aliases``.
    ``shm_mib`` sizes /dev/shm (None: the engine's default, 64 MiB with
    Podman). ``labels`` adds to the Hourglass labels, which always win.
    ``ports`` are TCP ports published on every address of the node under the
    same number as inside, so peers on other nodes reach the container there.
    """

    instance: str
    replica: int
    task: int
    subtask: int
    user: int
    image: str
    argv: tuple[str, ...]
    cpu_millis: int
    memory_mib: int
    pids_limit: int = 4096
    env: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str, bool], ...] = ()
    working_dir: str = ""
    network: str | None = None
    hostname: str = ""
    aliases: tuple[str, ...] = ()
    shm_mib: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.argv or not all(isinstance(arg, str) for arg in self.argv):
            raise ValueError("argv must be a non-empty list of strings")
        if self.cpu_millis < 10 or self.memory_mib < 6 or self.pids_limit < 1:
            raise ValueError("cpu_millis >= 10, memory_mib >= 6 and pids_limit >= 1 are required")

    @property
    def name(self) -> str:
        return container_name(self.instance, self.replica)

    @property
    def all_labels(self) -> dict[str, str]:
        """The given labels plus ``hourglass.instance``, ``.replica``, ``.task``, ``.subtask``
        and ``.user``."""
        ours = {INSTANCE_LABEL: self.instance, REPLICA_LABEL: self.replica, TASK_LABEL: self.task,
                SUBTASK_LABEL: self.subtask, USER_LABEL: self.user}
        return {**self.labels, **{key: str(value) for key, value in ours.items()}}


def attach_chips(spec: ContainerSpec, chips: Sequence[Chip], host_root: Path) -> ContainerSpec:
    """``spec`` with ``chips`` attached through their accelerator plugins.

    Each kind's chips are numbered from 0 inside in the order given (the
    renter's first Sophgo chip is ``/dev/bm-sophon0``, whichever host chip it
    is), with the plugin's control devices, read-only mounts (the host's
    ``/opt/sophon`` runtime) and environment (``HOURGLASS_CHIPS``). The
    spec's own environment wins over a plugin's. Raises KeyError for a kind
    no plugin serves.
    """
    by_kind: dict[str, list[Chip]] = {}
    for chip in chips:
        by_kind.setdefault(chip.kind, []).append(chip)
    devices, mounts, env = list(spec.devices), list(spec.mounts), {}
    for kind, group in by_kind.items():
        args = plugin_for(kind).container_args(group, host_root)
        devices += [device for device in args.devices if device not in devices]
        mounts += [(host, inside, True) for host, inside in args.mounts
                   if not any(m[1] == inside for m in mounts)]
        env.update(args.env)
    return replace(spec, devices=tuple(devices), mounts=tuple(mounts), env={**env, **spec.env})


@dataclass(frozen=True)
class ContainerState:
    """What the engine says about one container, from one inspect.

    ``status`` is ``created``, ``running``, ``stopping``, ``paused``, ``exited`` or
    ``unknown``. Only ``running`` proves the program was alive when the engine looked:
    a ``stopping`` container's program may have exited already. ``exit_code`` is set
    once it has exited (137: killed, e.g. after a stop's grace). ``started`` and
    ``finished`` are the engine's own StartedAt and FinishedAt, None until they happen;
    for a container that exits at once, FinishedAt may be a few microseconds *before*
    StartedAt (seen on Podman 4.3), so a duration must be clamped at zero.
    ``addresses`` maps each network the container is on to its IP there. A state from a
    list (``list_ours``) has no times: inspect the container for those.
    """

    handle: str
    status: str
    exit_code: int | None
    started: Timestamp | None
    finished: Timestamp | None
    labels: Mapping[str, str]
    oom_killed: bool = False
    error: str = ""
    addresses: Mapping[str, str] = field(default_factory=dict)

    @property
    def replica(self) -> int | None:
        """The replica id from the ``hourglass.replica`` label; None when there is none."""
        return replica_of(self.labels)


@dataclass(frozen=True)
class ContainerEvent:
    """A change to one of our containers: ``kind`` is ``created``, ``started``, ``died`` or
    ``removed``. A hint to inspect, not a state: events can repeat after a reconnect."""

    handle: str
    kind: str
    at: Timestamp
    labels: Mapping[str, str]
    exit_code: int | None = None

    @property
    def replica(self) -> int | None:
        """The replica id from the ``hourglass.replica`` label; None when there is none."""
        return replica_of(self.labels)


@dataclass(frozen=True)
class ContainerUsage:
    """A running container's counters from one reading: ``cpu_ns``, the CPU time its processes
    used so far (all cores together), at ``at_ns`` (the engine's clock, ns since the epoch),
    and ``memory_bytes`` in use. Two readings give the CPU in cores between them."""

    handle: str
    cpu_ns: int
    at_ns: int
    memory_bytes: int


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container printed, and how it ended."""

    exit_code: int
    stdout: str
    stderr: str


class BackendError(Exception):
    """The node's engine refused or failed an operation; the message says why."""


class NodeUnreachable(BackendError):
    """The node's engine did not answer (down, timed out, refused or reset the connection).

    ``sent`` is False when the connection was never made (refused, no socket): the call did
    nothing and may be made again. ``timed_out``: no answer came in the call's time. After a
    create or start that was sent, the outcome is unknown: look the container up by name.
    """

    def __init__(self, message, sent=True, timed_out=False):
        super().__init__(message)
        self.sent = sent
        self.timed_out = timed_out


class EngineBusy(NodeUnreachable):
    """This process's own calls to the node queued too long: nothing was sent."""

    def __init__(self, message):
        super().__init__(message, sent=False, timed_out=True)


class ContainerGone(BackendError):
    """No container has this handle (never started, or removed)."""


class ContainerExists(BackendError):
    """A container with this handle exists already: adopt it, do not start it again."""


class StartFailed(BackendError):
    """The container could not be created or started (missing image, bad executable, ...);
    nothing is left behind on the node."""


class ContainerBackend(ABC):
    """One node's container engine. Every call blocks: never call one on a web request's path.

    Every method may raise ``NodeUnreachable``; a missing container is
    ``ContainerGone`` except where a method says otherwise.
    """

    @abstractmethod
    def start(self, spec: ContainerSpec) -> str:
        """Create and start the replica's container; its handle. Raises ContainerExists,
        StartFailed."""

    @abstractmethod
    def stop(self, handle: str, grace: int) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns when it has stopped (so it may
        block ``grace`` seconds). A container already stopped or gone is success."""

    @abstractmethod
    def inspect(self, handle: str) -> ContainerState | None:
        """The container's state; None when it is gone."""

    @abstractmethod
    def list_ours(self, instance: str, running_only: bool = False) -> list[ContainerState]:
        """Every container of Hourglass instance ``instance`` (its ``hourglass.instance`` and a
        ``hourglass.replica`` label), running or not (``running_only``: the running ones),
        in one call: their handles, statuses, exit codes and labels, without times."""

    @abstractmethod
    def usage(self, handles: Sequence[str]) -> dict[str, ContainerUsage]:
        """{handle: counters} of the running containers among ``handles``, read in one call
        where the engine allows; one that is gone or not running is left out."""

    @abstractmethod
    def list_networks(self, instance: str) -> dict[str, Mapping[str, str]]:
        """{name: labels} of the networks of Hourglass instance ``instance``."""

    @abstractmethod
    def canary(self, image: str, instance: str, suffix: str = "") -> None:
        """Run and remove a throwaway container of ``image`` made with exactly a replica's
        options (init, no capabilities, no-new-privileges, limits, the engine's ulimits, a
        device, a task network with names), named ``hourglass-<instance>-canary<suffix>``
        (two canaries running at once, on nodes sharing one host, need two suffixes). Raises
        StartFailed with the engine's own message when such a container cannot run, or when
        containers on a task network would not find each other by name."""

    @abstractmethod
    def events(self, since_ns: int | None = None, idle: float = 5.0) -> Iterator[ContainerEvent]:
        """Our containers' events, from ``since_ns`` (ns since the epoch, exclusive) or now.

        The iterator ends when nothing at all has come for ``idle`` seconds or
        the engine closes the stream; call again with the last event's
        ``at.ns`` to resume without a gap.
        """

    @abstractmethod
    def logs(self, handle: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """The container's output (stdout and stderr) as text chunks: the last ``tail`` lines
        (None: all). With ``follow``, goes on until the container stops. The container is
        looked up at once (ContainerGone), the output as it is read."""

    @abstractmethod
    def exec(self, handle: str, argv: Sequence[str], timeout: float = 30.0) -> ExecResult:
        """Run ``argv`` (no shell) in the running container, unprivileged, as its user; waits
        up to ``timeout`` seconds. Raises BackendError when the container is not running."""

    @abstractmethod
    def remove(self, handle: str) -> None:
        """Remove the container, killing it at once if it runs (``stop`` first for a grace).
        Removing one already gone is success."""

    @abstractmethod
    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        """Make the per-task network ``name`` unless it exists; True when containers on it
        resolve each other's names (else pass peers by ``ContainerState.addresses``).
        Containers on two such networks cannot reach each other."""

    @abstractmethod
    def remove_network(self, name: str) -> None:
        """Remove the network; one already gone is success. Raises BackendError while
        containers are still on it (remove them first)."""
