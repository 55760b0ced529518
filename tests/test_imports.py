"""The package's import graph has no cycle (every import counts, including those inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "scripts" / "popdl"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports anywhere in its file.

    ``import a.b`` is an edge to ``a.b``; ``from a.b import c`` an edge to
    ``a.b``, and to ``a.b.c`` when that is a module; relative imports are
    resolved against the importing module.  Imports of the package root
    (``from popdl import __version__``) are not edges: its ``__init__``
    imports nothing.
    """
    modules = module_files(package)
    root = package.name
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".")
                    keep = len(parts) - node.level + (1 if is_package else 0)
                    base = ".".join(parts[:keep] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, modules)
                if target and target != module and target != root:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    # The graph is read for real: edges at module level and inside functions are both there.
    assert "popdl.scenarios" in graph["popdl.config"]
    assert "popdl.models" in graph["popdl.model_io"]  # imported inside PopdlModel.__init__
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between popdl modules: " + " -> ".join(cycle)


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import os\n")
    (pkg / "a.py").write_text("from pkg.sub import leaf\nfrom pkg import __version__\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (pkg / "c.py").write_text("from .b import f\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert find_cycle(graph) == ["pkg.b", "pkg.c", "pkg.b"]
    (pkg / "b.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(pkg)) is None


def test_readme_lists_every_module_bottom_layer_first():
    """The README's module table names every module once, and a module only
    imports modules listed above it (the layering the README promises)."""
    import re

    text = (REPO / "README.md").read_text()
    lines = text[text.index("| module | what it does |"):].splitlines()
    table = lines[2: next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    listed = [re.match(r"\| `([^`]+)`", line).group(1).rstrip("/") for line in table]
    rank = {name: i for i, name in enumerate(listed)}

    def row(module: str) -> str:
        top = module.split(".")[1] if "." in module else module
        return "cli" if top.startswith("cli") else top

    graph = import_graph(PACKAGE)
    rows = {row(m) for m in graph} - {"popdl", "__main__"}
    assert rows == set(rank), f"README table differs from the package: {sorted(rows ^ set(rank))}"
    for module, targets in graph.items():
        for target in targets:
            a, b = row(module), row(target)
            if a != b and a in rank:
                assert rank[b] < rank[a], f"{module} imports {target}, listed below it in the README"
