"""The layout's import rules: production code never imports the development stack or benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("fedfaas", "gateway", "cache_engine", "request_tracker", "functions")
DEVELOPMENT = ("fedfaas.devstack", "bench")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module a source file imports, at any depth (function-level imports count)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _production_sources() -> list[Path]:
    files = [p for top in PRODUCTION for p in sorted((ROOT / top).rglob("*.py"))]
    return [p for p in files if "devstack" not in p.relative_to(ROOT).parts]


def test_production_code_imports_neither_the_development_stack_nor_benchmarks() -> None:
    # Prepare
    sources = _production_sources()
    # Execute
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in sources
                 for line, name in _imports(p)
                 if any(name == dev or name.startswith(dev + ".") for dev in DEVELOPMENT)]
    # Assert
    assert len(sources) > 100  # the scan sees the whole production tree
    assert offenders == []


def test_the_rule_catches_an_import_of_the_emulator(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from fedfaas.devstack.faas.router import main\n")
    assert _imports(source) == [(2, "fedfaas.devstack.faas.router")]
