"""Fake host trees for the accelerator plugins: real files and real device nodes under a root.

Each builder writes what the real driver or tool would, under ``root`` (a
``tmp_path``), and returns the device nodes it made. The nodes are real
character devices made with ``mknod`` (numbers 1:3, the same as /dev/null),
so ``discover(root)`` finds them and Podman attaches them with
``--device ROOT/dev/bm-sophon0:/dev/bm-sophon0``, as DESIGN.md's "A fake
TPU" describes. Making a device node needs root.
"""

import json
import os
import stat
from pathlib import Path

DRIVER_VERSION_LINE = "release version:{}   release date: 20240101-120000\n"
GIB = 2**30


def mknod(path: Path) -> Path:
    """A character device at ``path`` (parents made) that reads as empty and swallows writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(path, 0o666)  # past the umask, so a non-root user in a container can open it
    return path


def make_sophgo_host(
    root: Path,
    cards=(("0x1686", 3),),
    driver="1.2.3",
    runtime=True,
    control=True,
) -> list[Path]:
    """The bmsophon driver's /proc tree and /dev nodes for ``cards``; returns the chip nodes.

    ``cards`` is a list of (chipid text as the driver prints it, chips on the
    card): ``[("0x1686", 3)] * 2`` is two SC7 cards of BM1684X. Chips are
    numbered across cards like the driver does (card0: bm-sophon0..2, card1:
    3..5). Each chip folder has readings: ``chip_temp`` "{40 + n} C",
    ``tpu_power`` "{10 + n} W", ``tpu_freq`` "1000 MHz", and ``heap`` three heaps of
    {n + 1} GiB, 2 GiB and 1 GiB; the chip's sysfs ``npu_usage`` says "usage:{10 * n}
    avusage:{5 * n}". ``runtime`` adds /opt/sophon (with libsophon-current/lib);
    ``control`` adds /dev/bmdev-ctl.
    """
    proc = root / "proc/bmsophon"
    proc.mkdir(parents=True)
    (proc / "driver_version").write_text(DRIVER_VERSION_LINE.format(driver))
    (proc / "card_num").write_text(f"{len(cards)}\n")
    (proc / "chip_num").write_text(f"{sum(count for _, count in cards)}\n")
    nodes = []
    for card, (chip_id, count) in enumerate(cards):
        card_dir = proc / f"card{card}"
        card_dir.mkdir()
        (card_dir / "chipid").write_text(f"{chip_id}\n")
        (card_dir / "chip_num_on_card").write_text(f"{count}\n")
        for _ in range(count):
            n = len(nodes)
            chip_dir = card_dir / f"bmsophon{n}"
            chip_dir.mkdir()
            for name, text in {
                "tpuid": f"{n}",
                "status": "Active",
                "chip_temp": f"{40 + n} C",
                "tpu_power": f"{10 + n} W",
                "tpu_freq": "1000 MHz",
                "heap": "".join(f"heap{i}, size = {hex(size * GIB)}, start_addr =0x{i}00000000\n"
                                for i, size in enumerate((n + 1, 2, 1))).rstrip(),
            }.items():
                (chip_dir / name).write_text(text + "\n")
            sysfs = root / f"sys/class/bm-sophon/bm-sophon{n}/device"
            sysfs.mkdir(parents=True)
            (sysfs / "npu_usage").write_text(f"usage:{10 * n} avusage:{5 * n}\n")
            nodes.append(mknod(root / f"dev/bm-sophon{n}"))
    if control:
        mknod(root / "dev/bmdev-ctl")
    if runtime:
        (root / "opt/sophon/libsophon-current/lib").mkdir(parents=True)
    return nodes


def make_nvidia_host(root: Path, gpus=2, control=True) -> list[Path]:
    """``/dev/nvidia0..gpus-1`` (and nvidiactl, nvidia-uvm, nvidia-uvm-tools); returns the GPUs."""
    nodes = [mknod(root / f"dev/nvidia{n}") for n in range(gpus)]
    if control:
        for name in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
            mknod(root / "dev" / name)
    return nodes


def write_nvidia_smi(root: Path, csv: str, code=0) -> Path:
    """An executable ``usr/bin/nvidia-smi`` that prints ``csv`` (what ``--format=csv,noheader,
    nounits`` prints), keeps its arguments in ``ROOT/smi-args`` and exits with ``code``."""
    path = root / "usr/bin/nvidia-smi"
    path.parent.mkdir(parents=True, exist_ok=True)
    (root / "smi-output").write_text(csv)
    path.write_text(f'#!/bin/sh\necho "$@" > "{root}/smi-args"\n'
                    f'cat "{root}/smi-output"\nexit {int(code)}\n')
    path.chmod(0o755)
    return path


def write_cdi_json(root: Path, names, kind="nvidia.com/gpu", folder="etc/cdi") -> Path:
    """A CDI spec declaring devices ``names`` (e.g. ["0", "1", "all"]) as ``FOLDER/nvidia.json``."""
    devices = [
        {"name": name, "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{name}"}]}}
        for name in names
    ]
    spec = {"cdiVersion": "0.5.0", "kind": kind, "devices": devices}
    path = root / folder / "nvidia.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))
    return path


def write_cdi_yaml(root: Path, text: str, folder="etc/cdi") -> Path:
    """A YAML CDI spec with the given text, as ``FOLDER/nvidia.yaml``."""
    path = root / folder / "nvidia.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_cpu_host(root: Path, cpus=4, mem_kib=16318480, available_kib=8159240) -> None:
    """``/proc/cpuinfo`` with ``cpus`` processors; ``/proc/meminfo`` with MemTotal ``mem_kib``,
    MemFree 1000 kB and MemAvailable ``available_kib`` (the page cache is in it, not in free)."""
    proc = root / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "cpuinfo").write_text(
        "".join(f"processor\t: {n}\nmodel name\t: Fake CPU\n\n" for n in range(cpus))
    )
    (proc / "meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree:         1000 kB\n"
                                  f"MemAvailable:   {available_kib} kB\n")
