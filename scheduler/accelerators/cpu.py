"""CPU and memory, the system resources every node has.

They are capacities, not chips: nothing is attached to a container for them
(the container backend sets ``--cpus`` and ``--memory`` from the spec), so
this is not an accelerator plugin but one function the node inventory calls
beside ``discover_all``; ``cpu_times`` and ``memory_now`` are what the sampling job reads
of the local host, counted as node-exporter counts them so that the charts say the same
with Prometheus or without.
"""

import re
from pathlib import Path


def host_capacity(host_root: Path) -> dict[str, int]:
    """``{"cpu": logical CPUs, "memory": bytes}`` from ``/proc/cpuinfo`` and ``/proc/meminfo``.

    Raises OSError when either file is missing: every Linux host has both.
    """
    cpuinfo = (host_root / "proc/cpuinfo").read_text()
    meminfo = (host_root / "proc/meminfo").read_text()
    cpus = len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))
    return {"cpu": cpus, "memory": _bytes(meminfo, "MemTotal") or 0}


def memory_now(host_root: Path) -> tuple[int, int] | None:
    """(total, available) bytes from ``/proc/meminfo``'s MemTotal and MemAvailable: what
    programs could still be given without swapping, the page cache among it (node-exporter's
    used memory is MemTotal - MemAvailable too); None when it cannot be read."""
    try:
        meminfo = (host_root / "proc/meminfo").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    total, available = _bytes(meminfo, "MemTotal"), _bytes(meminfo, "MemAvailable")
    return (total, available) if total and available is not None else None


def _bytes(meminfo, field):
    found = re.search(rf"^{field}:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def cpu_times(host_root: Path) -> tuple[int, int] | None:
    """(busy, all) CPU time of every core since boot, in ticks, from ``/proc/stat``'s ``cpu``
    line; None when it cannot be read. Two readings give the share busy between them.
    Busy is all but idle, iowait included, as node-exporter's ``1 - rate(mode="idle")``
    counts it (guest time is inside user time, so it is not added again)."""
    try:
        line = (host_root / "proc/stat").read_text().partition("\n")[0].split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(line) < 8 or line[0] != "cpu" or not all(field.isdigit() for field in line[1:8]):
        return None
    user, nice, system, idle, iowait, irq, softirq = map(int, line[1:8])
    steal = int(line[8]) if len(line) > 8 and line[8].isdigit() else 0
    busy = user + nice + system + iowait + irq + softirq + steal
    return busy, busy + idle
