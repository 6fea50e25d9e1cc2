"""NVIDIA GPUs: by CDI name where a CDI spec declares them, by device node otherwise.

With a CDI spec (``nvidia-ctk cdi generate``), each GPU is a chip named
``nvidia.com/gpu=N`` and Podman applies the spec's edits (device nodes,
driver libraries, hooks) itself. Only numbered devices count as chips: ``N``
(nvidia-ctk's default ``index`` names) or ``gpuN`` (``type-index``); "all",
UUID and MIG names are other names for the same GPUs, so they are ignored.

Without one, each ``/dev/nvidiaN`` character device is a chip, attached with
``/dev/nvidiactl``, ``/dev/nvidia-uvm`` and ``/dev/nvidia-uvm-tools`` when
present. Unlike Sophgo's, these nodes keep their host names inside: the
NVIDIA driver finds a GPU's node by its minor number, so ``/dev/nvidia5``
cannot be renamed ``/dev/nvidia0`` (CUDA numbers the visible GPUs from 0
anyway). The driver's libraries are not mounted on this path: the image must
bring them, which is why a CDI spec is preferred.

The host exposes no usage figures in files (they need NVML): ``metrics`` reads them from
``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` where the host root has
``usr/bin/nvidia-smi`` (the driver's utilities install it), run without a shell and
given ``SMI_SECONDS``; without it, or when it fails, it reports nothing. Its GPUs are
matched by nvidia-smi's ``index``, the number CDI names and ``/dev/nvidiaN`` carry on
the usual hosts (PCI order); a value it prints as "[N/A]" is left out.
"""

import logging
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from scheduler.accelerators import cdi
from scheduler.accelerators.base import Chip, ContainerArgs, is_char_device

log = logging.getLogger(__name__)

GPU = "nvidia.com/gpu"
kind_names = (GPU,)

CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
CDI_NAME = re.compile(r"[a-z0-9.-]+/[a-z0-9._-]+=\S+", re.IGNORECASE)
SMI = "usr/bin/nvidia-smi"
SMI_SECONDS = 5
# nvidia-smi's fields, in the order asked, each with its reading's name and scale
SMI_FIELDS = (("utilization.gpu", "util_ratio", 0.01), ("memory.used", "memory_used_bytes", 2**20),
              ("memory.total", "memory_total_bytes", 2**20), ("temperature.gpu", "temp_c", 1),
              ("power.draw", "power_w", 1))


def discover(host_root: Path) -> list[Chip]:
    """The host's GPUs by index: from CDI specs when they number any, else from /dev nodes."""
    chips = []
    for name in cdi.device_names(host_root, GPU):
        match = re.fullmatch(r"(?:gpu)?(\d+)", name)
        if match:
            chips.append(Chip(GPU, int(match.group(1)), f"{GPU}={name}"))
    if not chips:
        chips = _device_nodes(host_root)
    return sorted(chips, key=lambda chip: chip.index)


def container_args(chips: Sequence[Chip], host_root: Path) -> ContainerArgs:
    """CDI names as they are; device nodes under their host names, plus the control devices.

    ``HOURGLASS_CHIPS`` lists the numbers CUDA gives the GPUs inside ("0,1").
    """
    args = ContainerArgs(env={"HOURGLASS_CHIPS": ",".join(str(n) for n in range(len(chips)))})
    by_node = False
    for chip in chips:
        if CDI_NAME.fullmatch(chip.device):
            args.devices.append(chip.device)
        else:
            by_node = True
            args.devices.append(f"{chip.device}:/dev/nvidia{chip.index}:rwm")
    if by_node:
        for name in CONTROL_DEVICES:
            node = host_root / "dev" / name
            if is_char_device(node):
                args.devices.append(f"{node}:/dev/{name}:rwm")
    return args


def metrics(chips: Sequence[Chip], host_root: Path) -> dict[int, dict[str, float]]:
    """Per GPU index, what ``nvidia-smi`` reads: ``util_ratio``, ``memory_used_bytes``,
    ``memory_total_bytes``, ``temp_c``, ``power_w``; {} without nvidia-smi."""
    smi = host_root / SMI
    if not chips or not smi.is_file():
        return {}
    query = ",".join(["index", *(field for field, _, _ in SMI_FIELDS)])
    try:
        out = subprocess.run([str(smi), f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=SMI_SECONDS, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("nvidia-smi failed: %s", error)
        return {}
    wanted = {chip.index for chip in chips}
    readings = {}
    for line in out.stdout.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(SMI_FIELDS) + 1 or not cells[0].isdigit():
            continue
        values = {}
        for (_, name, scale), cell in zip(SMI_FIELDS, cells[1:], strict=True):
            try:
                value = float(cell) * scale
            except ValueError:  # "[N/A]", "[Not Supported]"
                continue
            values[name] = round(value) if name.endswith("_bytes") else value
        if int(cells[0]) in wanted and values:
            readings[int(cells[0])] = values
    return readings


def _device_nodes(host_root: Path) -> list[Chip]:
    chips = []
    for node in (host_root / "dev").glob("nvidia*"):
        match = re.fullmatch(r"nvidia(\d+)", node.name)
        if not match:
            continue
        if not is_char_device(node):
            log.warning("%s is not a character device; GPU skipped", node)
            continue
        chips.append(Chip(GPU, int(match.group(1)), str(node)))
    return chips
