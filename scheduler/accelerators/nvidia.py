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

The host exposes no usage figures in files (that needs NVML), so
``metrics`` reports nothing.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from scheduler.accelerators import cdi
from scheduler.accelerators.base import Chip, ContainerArgs, is_char_device

log = logging.getLogger(__name__)

GPU = "nvidia.com/gpu"
kind_names = (GPU,)

CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")
CDI_NAME = re.compile(r"[a-z0-9.-]+/[a-z0-9._-]+=\S+", re.IGNORECASE)


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
    """Nothing: GPU readings need NVML, which this plugin does not load."""
    return {}


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
