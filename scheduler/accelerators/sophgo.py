"""Sophgo BM1684 / BM1684X TPUs, found through the ``bmsophon`` driver's /proc tree.

The layout mirrors the driver's own code (sophgo/libsophon, ``driver/bm_debug.c``, which
makes the /proc files, and ``driver/bm_attr.c``, the sysfs ones) and Sophgo's "proc file
system" guide (``doc/guide_en/3_2_proc_description.rst``):

    /proc/bmsophon/driver_version            "release version:0.4.9   release date: ..."
    /proc/bmsophon/cardN/chipid               "0x1684", or "0x1684x" for a BM1684X (id 0x1686)
    /proc/bmsophon/cardN/bmsophonM/           one folder per chip; M is the host chip number
    /proc/bmsophon/cardN/bmsophonM/chip_temp  "45 C"   (or "N/A")
    /proc/bmsophon/cardN/bmsophonM/tpu_power  "12 W"   (or "N/A")
    /proc/bmsophon/cardN/bmsophonM/heap       "heap0, size = 0x1a0000000, start_addr =0x..."
                                              one line per memory heap (three)
    /sys/class/bm-sophon/bm-sophonM/device/npu_usage
                                              "usage:37 avusage:12" (percent: the last
                                              moments, since the driver loaded), or
                                              "Please, set [Usage enable] to 1"
    /dev/bm-sophonM                           the chip's character device
    /dev/bmdev-ctl                            the driver's control device

``metrics`` reads utilisation (``usage``), memory in all (the heaps' sizes added: what
``bm-smi`` shows as total), temperature and power. Memory in use is not in any file: the
driver gives it only through an ioctl on ``/dev/bmdev-ctl`` (``bm-smi``'s way), so it is
left out.

An SC7 card carries 3 chips; chips are numbered across cards, so two SC7
cards give bm-sophon0..5. A chip whose /dev node is missing or is not a
character device is skipped with a warning. Host paths handed back are
joined under ``host_root``: with ``/`` they are the real paths, with a test's
fake root they are its ``mknod`` nodes, which Podman attaches just the same.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from scheduler.accelerators.base import Chip, ContainerArgs, is_char_device, read_text

log = logging.getLogger(__name__)

BM1684 = "sophgo.com/bm1684"
BM1684X = "sophgo.com/bm1684x"
kind_names = (BM1684, BM1684X)

KINDS_BY_CHIP_ID = {0x1684: BM1684, 0x1686: BM1684X}
PROC = "proc/bmsophon"
CONTROL_DEVICE = "dev/bmdev-ctl"
RUNTIME = "opt/sophon"
SYSFS = "sys/class/bm-sophon"
METRIC_FILES = {"temp_c": "chip_temp", "power_w": "tpu_power"}


def discover(host_root: Path) -> list[Chip]:
    """Every usable BM1684/BM1684X chip, by host chip number; ``[]`` when the driver is absent."""
    proc = host_root / PROC
    if not proc.is_dir():
        return []
    driver = driver_version(read_text(proc / "driver_version") or "")
    chips = []
    for card, card_dir in _numbered(proc, "card"):
        chip_id = read_text(card_dir / "chipid") or ""
        kind = kind_of(chip_id)
        if kind is None:
            log.warning("%s: unknown chip id %r; its chips are skipped", card_dir, chip_id)
            continue
        for index, _ in _numbered(card_dir, "bmsophon"):
            node = host_root / "dev" / f"bm-sophon{index}"
            if not is_char_device(node):
                log.warning("%s is missing or not a character device; chip skipped", node)
                continue
            chips.append(Chip(kind, index, str(node), card=card, driver=driver))
    return sorted(chips, key=lambda chip: chip.index)


def container_args(chips: Sequence[Chip], host_root: Path) -> ContainerArgs:
    """Devices numbered from 0 in the given order, the control device, the runtime read-only.

    ``HOURGLASS_CHIPS`` lists the container-side numbers ("0,1"), so code in
    the container can open ``/dev/bm-sophon{n}`` for each.
    """
    args = ContainerArgs(
        devices=[f"{chip.device}:/dev/bm-sophon{n}:rwm" for n, chip in enumerate(chips)],
        env={"HOURGLASS_CHIPS": ",".join(str(n) for n in range(len(chips)))},
    )
    control = host_root / CONTROL_DEVICE
    if is_char_device(control):
        args.devices.append(f"{control}:/dev/bmdev-ctl:rwm")
    runtime = host_root / RUNTIME
    if runtime.is_dir():
        args.mounts.append((str(runtime), "/opt/sophon"))
    return args


def metrics(chips: Sequence[Chip], host_root: Path) -> dict[int, dict[str, float]]:
    """Per host chip number, where readable: ``util_ratio`` (0 to 1), ``memory_total_bytes``,
    ``temp_c`` and ``power_w``."""
    readings = {}
    for chip in chips:
        folder = host_root / PROC / f"card{chip.card}" / f"bmsophon{chip.index}"
        values = {}
        for name, file in METRIC_FILES.items():
            value = _leading_number(read_text(folder / file) or "")
            if value is not None:
                values[name] = value
        usage = re.match(r"usage:\s*(\d+)", read_text(
            host_root / SYSFS / f"bm-sophon{chip.index}" / "device/npu_usage") or "")
        if usage:
            values["util_ratio"] = min(int(usage.group(1)), 100) / 100
        heaps = re.findall(r"size\s*=\s*0x([0-9a-f]+)", read_text(folder / "heap") or "", re.I)
        if heaps:
            values["memory_total_bytes"] = sum(int(size, 16) for size in heaps)
        if values:
            readings[chip.index] = values
    return readings


def kind_of(chip_id: str) -> str | None:
    """The kind for a card's ``chipid`` text ("0x1686", "0x1684x", "1684"...); None if unknown."""
    text = chip_id.strip().lower()
    if text.endswith("x"):  # the driver prints a BM1684X (0x1686) as "0x1684x"
        return BM1684X if _hex(text[:-1]) == 0x1684 else None
    return KINDS_BY_CHIP_ID.get(_hex(text))


def driver_version(text: str) -> str:
    """The version number out of ``driver_version``'s "release version:X.Y.Z ..." line."""
    match = re.search(r"release version:\s*(\S+)", text)
    return match.group(1) if match else text.strip()


def _numbered(folder: Path, prefix: str) -> list[tuple[int, Path]]:
    """Sub-folders named ``{prefix}N``, as (N, path), by N."""
    found = []
    for path in folder.iterdir():
        match = re.fullmatch(rf"{prefix}(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _hex(text: str) -> int | None:
    try:
        return int(text, 16)
    except ValueError:
        return None


def _leading_number(text: str) -> float | None:
    match = re.match(r"-?\d+(\.\d+)?", text)
    return float(match.group()) if match else None
