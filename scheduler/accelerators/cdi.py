"""Device names from Container Device Interface (CDI) spec files.

Podman reads CDI specs from ``/etc/cdi`` and ``/var/run/cdi`` (``.json`` or
``.yaml``); each declares a ``kind`` (``nvidia.com/gpu``) and ``devices``,
each with a ``name`` (``"0"``, ``"all"``, a UUID). ``podman --device
nvidia.com/gpu=0`` then applies that device's edits. We only need the kind
and the device names, so YAML is read without a YAML library: block style
only (what ``nvidia-ctk cdi generate`` writes), not flow style
(``devices: [{name: ...}]``). A spec that cannot be read is logged and
skipped.
"""

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

SPEC_DIRS = ("etc/cdi", "var/run/cdi")
SPEC_SUFFIXES = {".json", ".yaml"}


def device_names(host_root: Path, kind: str) -> list[str]:
    """Names of the devices that specs under ``host_root`` declare for ``kind``, first seen first.

    A name in both folders counts once, as Podman lets the later folder's spec win.
    """
    names = []
    for folder in SPEC_DIRS:
        path = host_root / folder
        if not path.is_dir():
            continue
        for spec in sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES):
            try:
                spec_kind, spec_names = read_spec(spec)
            except (OSError, UnicodeDecodeError, ValueError) as error:
                log.warning("CDI spec %s skipped: %s", spec, error)
                continue
            if spec_kind == kind:
                names.extend(name for name in spec_names if name not in names)
    return names


def read_spec(path: Path) -> tuple[str | None, list[str]]:
    """A spec file's ``kind`` and device names; raises ValueError when JSON is malformed."""
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        devices = [d for d in data.get("devices") or [] if isinstance(d, dict) and "name" in d]
        return data.get("kind"), [str(d["name"]) for d in devices]
    return _read_yaml(text)


def _read_yaml(text: str) -> tuple[str | None, list[str]]:
    """``kind`` and ``devices[].name`` from a block-style YAML spec, whatever its indentation."""
    kind, names = None, []
    in_devices = False
    key_column = None  # the column of a device item's keys, e.g. 4 in "  - name: x"
    for raw in text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).rstrip()
        body = line.lstrip()
        if not body or body.startswith("#") or body in {"---", "..."}:
            continue
        column = len(line) - len(body)
        if column == 0 and not body.startswith("-"):
            key, _, value = body.partition(":")
            in_devices = key.strip() == "devices"
            if key.strip() == "kind":
                kind = _scalar(value)
            continue
        if not in_devices:
            continue
        if body.startswith("- ") and (key_column is None or column < key_column):
            rest = body[1:]
            key_column = column + 1 + len(rest) - len(rest.lstrip())
            body, column = rest.lstrip(), key_column
        if column == key_column and body.startswith("name:"):
            names.append(_scalar(body[len("name:") :]))
    return kind, names


def _scalar(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
