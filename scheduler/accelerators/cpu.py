"""CPU and memory, the system resources every node has.

They are capacities, not chips: nothing is attached to a container for them
(the container backend sets ``--cpus`` and ``--memory`` from the spec), so
this is not an accelerator plugin but one function the node inventory calls
beside ``discover_all``.
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
    total = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    return {"cpu": cpus, "memory": int(total.group(1)) * 1024 if total else 0}
