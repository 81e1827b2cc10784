"""Nothing on the data path can unpickle: no pickle, no unsafe torch.load, no allow_pickle=True.

The scan reads the code (Python's ``ast``), not the prose, so a docstring
that says "never unpickle" is not a finding while any import or call is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("fedfaas", "gateway", "cache_engine", "request_tracker", "functions", "bench")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}


def _call_name(node: ast.Call) -> str:
    parts = []
    func: ast.expr = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def findings(source: str, where: str = "<source>") -> list[str]:
    """Every way ``source`` could unpickle, as ``"where:line: what"``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{where}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            kwargs = {k.arg: k.value for k in node.keywords if k.arg}
            if name.endswith("torch.load") and not _is_true(kwargs.get("weights_only", ast.Constant(None))):
                out.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            if "allow_pickle" in kwargs and not (isinstance(kwargs["allow_pickle"], ast.Constant)
                                                 and kwargs["allow_pickle"].value is False):
                out.append(f"{where}:{node.lineno}: allow_pickle is not False")
            if name.endswith(("read_pickle", "to_pickle", "__reduce__")):
                out.append(f"{where}:{node.lineno}: calls {name}")
    return out


def test_the_scanner_finds_every_kind_of_unpickling() -> None:
    # Prepare
    source = "\n".join([
        "import pickle",
        "from cloudpickle import loads",
        "import torch, numpy as np, pandas as pd",
        "torch.load(f)",
        "torch.load(f, weights_only=False)",
        "torch.load(f, weights_only=True)",
        "np.load(f, allow_pickle=True)",
        "np.load(f, allow_pickle=False)",
        "pd.read_pickle(f)",
        "'''never unpickle: pickle.loads is not called here'''",
    ])
    # Execute
    found = findings(source)
    # Assert
    assert [f.split(":")[1] for f in found] == ["1", "2", "4", "5", "7", "9"]


def test_no_source_file_can_unpickle() -> None:
    # Prepare
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py"))]
    # Execute
    found = [f for p in files for f in findings(p.read_text(), str(p.relative_to(ROOT)))]
    # Assert
    assert len(files) > 50
    assert found == []
