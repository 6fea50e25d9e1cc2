"""The dependency rule of DESIGN.md: ``portal`` never imports ``scheduler``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_portal_never_imports_scheduler():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "portal").rglob("*.py"))
        for name in imported_modules(path)
        if name == "scheduler" or name.startswith("scheduler.")
    ]
    assert offenders == []


def test_the_check_sees_imports(tmp_path):
    """Guard the guard: both import forms are found."""
    sample = tmp_path / "sample.py"
    sample.write_text("import scheduler.lease\nfrom scheduler import podman\n")
    assert list(imported_modules(sample)) == ["scheduler.lease", "scheduler"]
