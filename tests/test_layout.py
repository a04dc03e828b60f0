"""The package layout: no import cycles among distill's modules, core at the bottom, no imports from scripts/.

The module graph is read from the source with ``ast`` (nothing is imported): every
``import`` / ``from ... import`` statement counts, including the lazy ones inside
functions (a lazy import still runs, and a cycle through it still half-initialises
a module), and ``importlib.import_module("literal")`` calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import distill

PACKAGE_DIR = Path(distill.__file__).resolve().parent
ROOT = PACKAGE_DIR.name  # "distill"
BOTTOM = f"{ROOT}.core"


def module_name(path: Path, package_dir: Path) -> str:
    """``distill/a/b.py`` -> ``distill.a.b``; ``distill/a/__init__.py`` -> ``distill.a``."""
    parts = (package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        if level - 1 > len(base) - 1:
            raise ImportError(f"{module}: relative import beyond the top-level package")
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imported_names(path: Path, module: str) -> list[tuple[str, tuple[str, ...], int]]:
    """(absolute module, names imported from it, line) for every import in ``path``, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module
            found.append((base, tuple(alias.name for alias in node.names), node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _is_import_module(node.func)):
            found.append((node.args[0].value, (), node.lineno))
    return found


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (isinstance(func, ast.Name) and func.id == "import_module")


def module_graph(package_dir: Path) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    """(module -> the package's modules it imports, module -> (top-level name, line) of every import).

    ``from pkg.x import y`` is an edge to ``pkg.x.y`` when that is a module, else to ``pkg.x``;
    ``import pkg.x.y`` is an edge to the deepest existing module it names; ``from pkg import
    __version__`` (the top package's version string) and self-imports are not edges.
    """
    package_dir = Path(package_dir)
    files = {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}
    top = package_dir.name

    def deepest(name: str) -> str | None:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in files:
                return ".".join(parts[:i])
        return None

    graph: dict[str, set[str]] = {m: set() for m in files}
    raw: dict[str, list[tuple[str, int]]] = {m: [] for m in files}
    for module, path in files.items():
        for base, names, line in imported_names(path, module):
            raw[module].append((base.split(".")[0], line))
            if base.split(".")[0] != top:
                continue
            if base == top and names and set(names) <= {"__version__"}:
                continue
            targets = {f"{base}.{n}" if f"{base}.{n}" in files else deepest(base) for n in names} if names else {deepest(base)}
            graph[module] |= {t for t in targets if t and t != module}
    return graph, raw


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module."""
    return [_cycle_in(graph, component) for component in tangles(graph)]


def tangles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
    return components


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _format(cycles: list[list[str]]) -> str:
    return "\n".join("  " + " -> ".join(cycle) for cycle in cycles)


def _describe(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"  {' -> '.join(_cycle_in(graph, c))}\n    (all {len(c)} modules of the tangle: {', '.join(sorted(c))})"
                     for c in tangles(graph))


# -- the package ------------------------------------------------------------------------------------

def test_no_import_cycles_among_distills_modules():
    graph, _ = module_graph(PACKAGE_DIR)
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the walk saw the package
    assert not tangles(graph), f"import cycles among distill's modules:\n{_describe(graph)}"


def test_core_imports_nothing_from_the_other_subpackages():
    graph, _ = module_graph(PACKAGE_DIR)
    core = {m for m in graph if m == BOTTOM or m.startswith(BOTTOM + ".")}
    assert len(core) >= 5
    upward = sorted(f"{m} -> {t}" for m in core for t in graph[m] if t not in core)
    assert not upward, "distill.core is the bottom layer, but:\n  " + "\n  ".join(upward)


def test_nothing_in_distill_imports_from_scripts():
    _, raw = module_graph(PACKAGE_DIR)
    offenders = sorted(f"{m}:{line}" for m, imports in raw.items() for top, line in imports if top == "scripts")
    assert not offenders, f"distill must not import from scripts/: {offenders}"


# -- the graph functions on a synthetic package -----------------------------------------------------

def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_module_graph_resolves_every_kind_of_import(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": '__version__ = "1"\n',
        "core/__init__.py": "",
        "core/base.py": "from pkg import __version__\nimport os\n",
        "core/util.py": "from . import base\nfrom .base import thing\nfrom pkg.core import CONSTANT\n",
        "stage/__init__.py": "from pkg.stage import worker\n",
        "stage/worker.py": ("import pkg.core.util\nfrom ..core import base as b\nimport scripts.tool\n\n"
                            "def lazy():\n    from pkg.core.util import helper\n    import importlib\n"
                            "    return importlib.import_module('pkg.stage.late')\n"),
        "stage/late.py": "from pkg.stage import worker\n",
    })
    graph, raw = module_graph(pkg)
    assert graph == {
        "pkg": set(),
        "pkg.core": set(),
        "pkg.core.base": set(),  # __version__ from the top package is not an edge
        "pkg.core.util": {"pkg.core.base", "pkg.core"},  # CONSTANT is an attribute of pkg.core
        "pkg.stage": {"pkg.stage.worker"},
        "pkg.stage.worker": {"pkg.core.util", "pkg.core.base", "pkg.stage.late"},
        "pkg.stage.late": {"pkg.stage.worker"},
    }
    assert ("scripts", 3) in raw["pkg.stage.worker"]
    assert find_cycles(graph) == [["pkg.stage.late", "pkg.stage.worker", "pkg.stage.late"]]


def test_a_lazy_import_closing_a_loop_is_a_cycle(tmp_path):
    files = {
        "__init__.py": "",
        "a.py": "from pkg.b import f\n",
        "b.py": "from pkg import c\n\ndef f():\n    return 1\n",
        "c.py": "import os\n",
    }
    acyclic, _ = module_graph(_write_package(tmp_path / "before", files))
    assert find_cycles(acyclic) == []
    files["c.py"] = "def g():\n    from .a import something  # lazy\n    return something\n"
    cyclic, _ = module_graph(_write_package(tmp_path / "after", files))
    assert find_cycles(cyclic) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert _format(find_cycles(cyclic)) == "  pkg.a -> pkg.b -> pkg.c -> pkg.a"


def test_find_cycles_reports_each_tangle_once():
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "x": {"y"}, "y": {"z"}, "z": {"x", "y"}}
    assert sorted(find_cycles(graph)) == [["a", "b", "a"], ["x", "y", "z", "x"]]
