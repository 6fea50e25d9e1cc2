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


def import_graph(package):
    """{module: modules of this project it imports at module level} for ``package``;
    ``from a import b`` counts as importing ``a.b`` when that is a module."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else node.module for t in targets]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph):
    """The modules that lie on an import cycle, as sets (strongly connected components
    of more than one module)."""
    order, low, stack, found = {}, {}, [], []

    def visit(module):
        order[module] = low[module] = len(order)
        stack.append(module)
        for other in graph[module]:
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            component = {stack.pop()}
            while module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.append(component)

    for module in graph:
        if module not in order:
            visit(module)
    return found


def test_no_import_cycles():
    """A module never imports, through others, what imports it (issue 15)."""
    assert [cycles(import_graph(package)) for package in ("portal", "scheduler")] == [[], []]


def test_the_cycle_check_sees_a_cycle():
    """Guard the guard: a two-module loop is found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    assert cycles({"a": {"b"}, "b": set()}) == []
