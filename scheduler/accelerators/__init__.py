"""The accelerator plugin seam: which chips a node has, and how a container gets them.

``discover_all(host_root)`` asks every plugin in ``PLUGINS`` for its chips;
a plugin that raises is logged and skipped, never fatal, so a broken driver
on one kind does not hide the others. ``plugin_for(kind)`` finds the plugin
whose ``container_args`` and ``metrics`` serve a chip's kind. CPU and memory
are not chips: see ``cpu.host_capacity``.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

from scheduler.accelerators import nvidia, sophgo
from scheduler.accelerators.base import AcceleratorPlugin, Chip, ContainerArgs
from scheduler.accelerators.cpu import host_capacity

__all__ = [
    "PLUGINS",
    "AcceleratorPlugin",
    "Chip",
    "ContainerArgs",
    "discover_all",
    "host_capacity",
    "plugin_for",
]

log = logging.getLogger(__name__)

PLUGINS: tuple[AcceleratorPlugin, ...] = (sophgo, nvidia)


def discover_all(
    host_root: Path, plugins: Sequence[AcceleratorPlugin] = PLUGINS
) -> dict[str, list[Chip]]:
    """The host's chips grouped by kind (``{"sophgo.com/bm1684x": [...]}``); kinds without chips
    are absent. Reads only under ``host_root``; a failing plugin's kinds are simply missing.
    """
    found: dict[str, list[Chip]] = {}
    for plugin in plugins:
        try:
            chips = plugin.discover(host_root)
        except Exception:
            log.exception("accelerator plugin for %s failed; skipped", ", ".join(plugin.kind_names))
            continue
        for chip in chips:
            found.setdefault(chip.kind, []).append(chip)
    return found


def plugin_for(kind: str, plugins: Sequence[AcceleratorPlugin] = PLUGINS) -> AcceleratorPlugin:
    """The plugin that serves ``kind``; raises KeyError for a kind no plugin knows."""
    for plugin in plugins:
        if kind in plugin.kind_names:
            return plugin
    raise KeyError(kind)
