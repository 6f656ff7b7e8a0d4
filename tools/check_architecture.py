#!/usr/bin/env python3
"""Checks of the package's shape that import-linter does not make, printed as a report.

* import cycles over EVERY import statement of edge_pqrnn, function-local ones included
  (a deferred import must not hide a cycle);
* size: no hand-written module over MAX_MODULE_LINES lines, no function over
  MAX_FUNCTION_LINES (generated files are exempt); the largest of each are printed.

Usage: ``python tools/check_architecture.py [--top N]``; exits 1 on a violation.
The test suite runs it (tests/test_architecture.py) next to ``lint-imports``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "edge_pqrnn"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
#: Written by a program, not by hand (each names its generator in its first lines).
GENERATED = {"edge_pqrnn/projection/_unicode_data.py"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names an import statement refers to (``from a import b`` gives a.b and a)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = module.split(".")
        if node.level:  # relative: from the package of this module
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        yield name
        yield from (f"{name}.{alias.name}" for alias in node.names)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code."""
    known = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py"):
                resolved = resolve(target) if target.startswith(PACKAGE) else None
                # A module importing its own package's __init__ (or itself) is no edge.
                if resolved and resolved != name and not name.startswith(resolved + ".") and resolved != PACKAGE:
                    graph[name].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def sizes(root: Path = ROOT) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, module) and (lines, module:function) of every hand-written file, largest first."""
    module_lines, function_lines = [], []
    for path in modules(root).values():
        rel = path.relative_to(root).as_posix()
        if rel in GENERATED:
            continue
        text = path.read_text(encoding="utf-8")
        module_lines.append((len(text.splitlines()), rel))
        for node in ast.walk(ast.parse(text, rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function_lines.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
    return sorted(module_lines, reverse=True), sorted(function_lines, reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5, help="how many of the largest modules/functions to print")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to check (default: this one)")
    args = parser.parse_args(argv)
    problems = 0
    found = cycles(import_graph(args.root))
    for component in found:
        print(f"✗ import cycle: {' <-> '.join(component)}")
    problems += len(found)
    print(f"{'✓' if not found else '✗'} import cycles (every import statement, function-local included): {len(found)}")
    module_lines, function_lines = sizes(args.root)
    for label, rows, limit in (("module", module_lines, MAX_MODULE_LINES),
                               ("function", function_lines, MAX_FUNCTION_LINES)):
        over = [row for row in rows if row[0] > limit]
        problems += len(over)
        print(f"{'✓' if not over else '✗'} {label}s over {limit} lines: {len(over)}; largest:")
        for lines, name in (over or rows)[: max(args.top, len(over))]:
            print(f"    {lines:5d}  {name}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
