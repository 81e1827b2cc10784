"""The JIT package's layout: every module imports alone, no import cycle, no benchmark code.

Imports are read from the sources with ``ast``, at any depth (a function's local
import and a ``TYPE_CHECKING`` block count), so a cycle hidden in a function
still fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JIT = ROOT / "fedfaas" / "jit"
PRODUCTION = ("fedfaas", "gateway", "cache_engine", "request_tracker", "functions")
"""Top-level folders of production code (``bench`` is the benchmarks' own package)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute, at any depth of its syntax tree."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # a submodule, maybe


def _jit_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in JIT.glob("*.py")}
    return {name: {m for m in _imported(path) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_by_hand() -> None:
    # Prepare: a -> b -> c -> a, and d alone
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    # Execute / Assert
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(_module_name(p) for p in JIT.glob("*.py")))
def test_every_jit_module_imports_in_a_fresh_interpreter(module: str) -> None:
    # Execute
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    # Assert
    assert done.returncode == 0, done.stderr


def test_no_import_cycle_among_jit_modules() -> None:
    # Prepare
    graph = _jit_graph()
    # Execute
    cycle = _cycle(graph)
    # Assert: the estimator reads the learner, the learner the estimate, not the reverse
    assert cycle is None, " -> ".join(cycle or [])
    assert "fedfaas.jit.learning" in graph["fedfaas.jit.estimator"]
    assert "fedfaas.jit.estimator" not in graph["fedfaas.jit.learning"]


def test_production_code_imports_nothing_from_bench() -> None:
    # Prepare
    sources = [p for top in PRODUCTION for p in (ROOT / top).rglob("*.py")]
    # Execute
    offenders = sorted(str(p.relative_to(ROOT)) for p in sources
                       if any(m == "bench" or m.startswith("bench.") for m in _imported(p)))
    # Assert
    assert sources and offenders == []
