"""What every accelerator plugin speaks: a chip, the container fragments, the plugin contract.

A plugin is a module (or any object) with ``kind_names``, ``discover``,
``container_args`` and ``metrics``; it never calls Podman itself. The core
merges the fragments it returns into the container spec (Backend.AI's
compute plugins are the model).

Every host path is read under ``host_root`` (``Path("/")`` in production, a
fake tree with real ``mknod`` device nodes in tests), and the paths a plugin
hands back are ``host_root``-joined too, so a test's fake node is exactly what
Podman attaches.
"""

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Chip:
    """One accelerator chip of a node: a unit of a system resource such as ``sophgo.com/bm1684x``.

    ``index`` is the host's own chip number (``bm-sophon4`` -> 4), the chip's
    device id within its node. ``device`` is what attaches it to a container:
    a host device node (already joined under ``host_root``) or a CDI name such
    as ``nvidia.com/gpu=0``. ``card`` is the board the chip sits on, where the
    driver tells; ``driver`` the host driver's version, where known.
    """

    kind: str
    index: int
    device: str
    card: int | None = None
    driver: str = ""


@dataclass
class ContainerArgs:
    """A plugin's fragment of a container spec, for the core to merge.

    ``devices``: ``"HOST:CONTAINER:rwm"`` strings or CDI names, as Podman's
    ``--device`` takes them. ``mounts``: ``(host path, container path)``
    pairs, always bound read-only. ``env``: variables to set.
    """

    devices: list[str] = field(default_factory=list)
    mounts: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class AcceleratorPlugin(Protocol):
    """The contract; ``scheduler.accelerators.sophgo`` and ``.nvidia`` are modules that meet it."""

    kind_names: tuple[str, ...]

    def discover(self, host_root: Path) -> list[Chip]:
        """The node's chips of this plugin's kinds, by host index; ``[]`` when there are none."""

    def container_args(self, chips: Sequence[Chip], host_root: Path) -> ContainerArgs:
        """Attach ``chips`` (in this order, numbered from 0 inside) to one container."""

    def metrics(self, chips: Sequence[Chip], host_root: Path) -> dict[int, dict[str, float]]:
        """Current readings per host chip index, named as ``ChipSample``'s columns
        (``util_ratio`` 0 to 1, ``memory_used_bytes``, ``memory_total_bytes``, ``temp_c``,
        ``power_w``), only those the host gives; chips it says nothing about are left out.
        The leader's sampling job (``scheduler.sampling``) calls it for the local node."""


def is_char_device(path: Path) -> bool:
    """True when ``path`` exists and is a character device (a real node, not a stray file)."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def read_text(path: Path) -> str | None:
    """The file's text, stripped; None when it cannot be read (a /proc entry may vanish)."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
