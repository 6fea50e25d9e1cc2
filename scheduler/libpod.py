"""The backend seam's types in libpod's terms: what podman-py is given and what it returns.

``create_args`` makes a ``ContainerSpec`` podman-py's ``containers.create`` keywords (every
limit, no privilege); ``state_of``, ``listed`` and ``event_of`` read libpod's JSON (an
inspect, an entry of a container list, a line of the event stream) into the seam's
``ContainerState`` and ``ContainerEvent``; ``usage_of`` one entry of a stats answer.
"""

from scheduler.backend import (
    NS,
    REPLICA_LABEL,
    ContainerEvent,
    ContainerSpec,
    ContainerState,
    ContainerUsage,
    Timestamp,
)

CPU_PERIOD_US = 100_000
MIB = 1024 * 1024
STATUSES = {"configured": "created", "created": "created", "initialized": "created",
            "running": "running", "stopping": "stopping", "paused": "paused",
            "exited": "exited", "stopped": "exited"}
EVENT_KINDS = {"create": "created", "start": "started", "died": "died", "remove": "removed"}


def create_args(spec: ContainerSpec) -> dict:
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


def state_of(attrs: dict) -> ContainerState:
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


def listed(attrs: dict) -> ContainerState:
    """A ContainerState, without times, from one entry of libpod's container list."""
    status = STATUSES.get(str(attrs.get("State", "")).lower(), "unknown")
    names = attrs.get("Names") or [""]
    return ContainerState(
        handle=str(names[0]).lstrip("/"), status=status,
        exit_code=int(attrs.get("ExitCode") or 0) if status == "exited" else None,
        started=None, finished=None, labels=dict(attrs.get("Labels") or {}))


def event_of(data: dict) -> ContainerEvent | None:
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


def usage_of(entry: dict) -> ContainerUsage:
    """A ContainerUsage from one entry of libpod's ``/containers/stats``: ``CPUNano`` is the
    container's CPU time so far, ``SystemNano`` when Podman read it, ``MemUsage`` bytes."""
    return ContainerUsage(handle=str(entry.get("Name", "")).lstrip("/"),
                          cpu_ns=int(entry.get("CPUNano") or 0),
                          at_ns=int(entry.get("SystemNano") or 0),
                          memory_bytes=int(entry.get("MemUsage") or 0))
