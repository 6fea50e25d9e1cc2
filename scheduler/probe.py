"""The probe: how the chips of a node other than the local one are read, on that node.

``probe_chips`` runs ``PROBE_SCRIPT`` (fixed; it needs only sh builtins and
``ls``) in a throwaway container of the probe image, with the node's
``/proc/bmsophon``, ``/dev``, ``/etc/cdi`` and ``/var/run/cdi`` bound
read-only under ``/host`` (those the node has). It prints one record per line,
paths relative to the host's root::

    D proc/bmsophon/card0            a folder
    F proc/bmsophon/card0/chipid     a regular file; its lines follow, each as "| <line>"
    | 0x1686
    C crw-rw-rw- 1 0 0 509, 0 Jan 1 00:00 /host/dev/bm-sophon0     ``ls -lnd`` of a device
    END                              the output is complete

Folders are walked three levels deep, symlinks skipped; devices are those the
plugins look for (``bm-sophon*``, ``bmdev-ctl``, ``nvidia*``). ``mirror``
rebuilds that in a scratch folder (files with their text; character devices
made with ``mknod``, same major:minor, mode 0, which needs root), the same
``discover_all`` runs on it, and device paths are mapped back to the node's.
"""

import os
import re
import stat
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

from scheduler.accelerators import Chip, discover_all

PROBE_PATHS = ("proc/bmsophon", "dev", "etc/cdi", "var/run/cdi")
PROBE_SCRIPT = r"""
walk() {
  for p in "$1"/*; do
    [ -h "$p" ] && continue
    if [ -d "$p" ]; then
      printf 'D %s\n' "${p#/host/}"
      [ "$2" -gt 1 ] && walk "$p" $(($2 - 1))
    elif [ -f "$p" ]; then
      printf 'F %s\n' "${p#/host/}"
      while IFS= read -r line || [ -n "$line" ]; do printf '| %s\n' "$line"; done < "$p"
    fi
  done
}
for top in proc/bmsophon etc/cdi var/run/cdi; do
  if [ -d "/host/$top" ]; then printf 'D %s\n' "$top"; walk "/host/$top" 3; fi
done
ls -lnd /host/dev/bm-sophon* /host/dev/bmdev-ctl /host/dev/nvidia* 2>/dev/null |
  while IFS= read -r line; do printf 'C %s\n' "$line"; done
echo END
"""
DEVICE_LINE = re.compile(r"c\S*\s+\d+\s+\d+\s+\d+\s+(\d+),\s*(\d+)\s.*\s/host/(dev/[^/\s]+)")


def probe_chips(backend, image, probe_root=Path("/")) -> list[Chip]:
    """The chips of ``backend``'s node, read by a probe container of ``image`` that finds the
    node's host paths under ``probe_root`` (``/`` except in tests). Raises what
    ``PodmanBackend.run_probe`` raises, and ValueError or OSError (see ``mirror``)."""
    mounts = [(str(probe_root / path), f"/host/{path}") for path in PROBE_PATHS]
    output = backend.run_probe(image, PROBE_SCRIPT, mounts)
    with tempfile.TemporaryDirectory(prefix="hg-probe-") as scratch:
        return chips_from_probe(output, Path(scratch), probe_root)


def chips_from_probe(output: str, scratch: Path, node_root: Path = Path("/")) -> list[Chip]:
    """The chips a probe's ``output`` shows, with device paths on the node (under ``node_root``).

    Mirrors the output into the empty folder ``scratch`` and runs the plugins on it.
    """
    mirror(output, scratch)
    prefix = f"{scratch}/"
    chips = []
    for found in discover_all(scratch).values():
        for chip in found:
            if chip.device.startswith(prefix):
                chip = replace(chip, device=str(node_root / chip.device[len(prefix):]))
            chips.append(chip)
    return chips


def mirror(output: str, root: Path) -> None:
    """Re-create under ``root`` what the probe printed (see the module docstring).

    Raises ValueError for output cut short or outside the protocol, and
    OSError when a device cannot be made (``mknod`` needs root).
    """
    lines = output.split("\n")
    if "END" not in lines:
        raise ValueError("probe output is cut short")
    files, current = {}, None
    for line in lines[:lines.index("END")]:
        tag, _, rest = line.partition(" ")
        if tag == "|" and current is not None:
            files[current].append(rest + "\n")
            continue
        current = None
        if tag == "D":
            _under(root, rest).mkdir(parents=True, exist_ok=True)
        elif tag == "F":
            current = _under(root, rest)
            files[current] = []
        elif tag == "C":
            match = DEVICE_LINE.fullmatch(rest)
            if match:  # other entries (a folder such as nvidia-caps, a link) are no devices
                node = _under(root, match[3])
                node.parent.mkdir(parents=True, exist_ok=True)
                os.mknod(node, stat.S_IFCHR, os.makedev(int(match[1]), int(match[2])))
        else:
            raise ValueError(f"unexpected probe line {line[:80]!r}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(text))


def _under(root, relative):
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not any(
            path.is_relative_to(top) for top in PROBE_PATHS):
        raise ValueError(f"probe path outside the probed folders: {relative[:80]!r}")
    return root / path
