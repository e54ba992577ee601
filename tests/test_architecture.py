"""Architecture rules that keep the processes independent (DG-02, DG-03 in docs/decisions.md)."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

PRODUCER_PACKAGES = ["fitness", "messaging", "tasks", "branches", "monitoring"]
CONSUMER_PACKAGES = {"ml", "notifications", "audit"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_producer_side_imports_nothing_from_ml_or_notifications():
    offenders = []
    for package in PRODUCER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_modules(path):
                if name.split(".")[0] in CONSUMER_PACKAGES:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


WEB_PROCESS = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from fitness.wsgi import application
from django.urls import get_resolver
from django.test import Client
import pkgutil, importlib
for package in ("fitness", "messaging", "tasks", "branches", "monitoring"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
get_resolver().url_patterns  # every view module
Client().get("/healthz")
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print("TORCH:" + ",".join(loaded[:5]))
"""


def test_the_web_process_never_imports_torch():
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "TORCH:", out


# --- no import cycles, counting the imports inside functions ------------------------------------
# Written with the standard library's `ast` rather than grimp/import-linter: grimp would be a new
# pinned dependency of the shared environment only for this, it builds graphs of importable
# packages alone (not benchmarks/ or manage.py), and it finds no cycles by itself (only chains
# and "cycle breakers"); the graph below is the same one, in a few lines.
CYCLE_FREE_EXCLUDED = {".venv", "tests", "migrations", "node_modules", "var"}


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name (outside .venv, tests and migrations)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(part in CYCLE_FREE_EXCLUDED or part.startswith(".") for part in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def module_imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """The project modules that module `name` imports, anywhere in it (functions too), with lines.

    `import a.b.c` and `from a.b import c` name the module a.b.c when there is one, else the
    closest enclosing project module; relative imports are resolved against `name`'s package.
    Imports under `if TYPE_CHECKING:` never run and are not counted.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def closest(dotted: str) -> str | None:
        while dotted:
            if dotted in modules:
                return dotted
            dotted = dotted.rpartition(".")[0]
        return None

    found = []
    stack = [ast.parse(path.read_text(), filename=str(path))]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        for target in targets:
            imported = closest(target)
            if imported is not None and imported != name:
                found.append((imported, node.lineno))
    return found


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(module: str) -> None:  # Tarjan's algorithm; the graph is small enough to recurse
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.get(module, {}):
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to itself
        members, start = set(group), group[0]
        previous: dict[str, str] = {}
        frontier = [start]
        while start not in previous and frontier:
            following = []
            for module in frontier:
                for other in sorted(graph[module]):
                    if other in members and other not in previous:
                        previous[other] = module
                        following.append(other)
            frontier = following
        path, module = [start], previous[start]
        while module != start:
            path.append(module)
            module = previous[module]
        cycles.append([start, *reversed(path[1:]), start])
    return cycles


def test_no_import_cycles_among_the_project_modules_counting_imports_inside_functions():
    modules = project_modules()
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        for imported, line in module_imports(name, path, modules):
            graph[name].setdefault(imported, line)
    described = []
    for cycle in import_cycles(graph):
        steps = [f"{a} ({modules[a].relative_to(ROOT)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
        described.append(" -> ".join([*steps, cycle[-1]]))
    assert described == [], "import cycles:\n" + "\n".join(described)


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "pkg" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", **{f"pkg.{m}": tmp_path / "pkg" / f"{m}.py" for m in "abc"}}
    graph = {name: dict(module_imports(name, path, modules)) for name, path in modules.items()}

    assert graph["pkg.c"] == {}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
