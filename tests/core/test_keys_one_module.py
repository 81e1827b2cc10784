"""Every Redis key and S3 object name comes from :mod:`fedfaas.keys`.

The scan reads the production sources with :mod:`ast` and reports, by file and
line, each string literal or f-string outside ``fedfaas/keys.py`` that looks
like a key or an object name, so a key built by hand fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

from fedfaas import keys

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("fedfaas", "gateway", "cache_engine", "request_tracker", "functions")
KEYS_MODULE = ROOT / "fedfaas" / "keys.py"

# What a key or an object name looks like, with every f-string placeholder as ``{}``.
KEY_LIKE = [
    (re.compile(r"^ff:"), "starts with the Redis prefix ff:"),
    (re.compile(r"^fedfaas:\S"), "is a fedfaas: namespace"),
    (re.compile(r":(job|round|req|jit|ce|t|j|r|c):"), "holds a key segment"),
    (re.compile(r"tenants/"), "holds the S3 tenants/ prefix"),
    (re.compile(r"\.ffu$"), "ends in .ffu"),
    (re.compile(r"^\{\}:[A-Za-z_]"), "appends a :segment to a placeholder"),
    (re.compile(r"^:[a-z_]+(:|$)"), "is a :segment to append"),
]
NAMESPACE_ARGS = {"namespace", "ns", "prefix", "key_prefix"}


def _template(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                   for v in node.values)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants: prose about keys is not a key."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def offences(path: Path) -> Iterator[str]:
    """``file:line: why`` for every key built in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.JoinedStr):
            text = _template(node)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in skip and id(node) not in inner):
            text = node.value
        if text is not None:
            for pattern, why in KEY_LIKE:
                if pattern.search(text):
                    yield f"{where}:{node.lineno}: {text!r} {why}"
                    break
        # ":".join((ns, *parts)): a key assembled from loose parts.
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "join" and isinstance(node.func.value, ast.Constant)
                and node.func.value.value == ":"):
            yield f"{where}:{node.lineno}: ':'.join builds a key from parts"
        # A namespace or prefix parameter whose default is a literal, not a name from keys.
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.posonlyargs, *node.args.args]
            pairs = [*zip(args[len(args) - len(node.args.defaults):], node.args.defaults, strict=True),
                     *zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)]
            for arg, default in pairs:
                if (arg.arg in NAMESPACE_ARGS and isinstance(default, ast.Constant)
                        and isinstance(default.value, str)):
                    yield (f"{where}:{default.lineno}: {arg.arg}={default.value!r} "
                           f"is a key namespace default")


def production_sources() -> list[Path]:
    files = [p for top in PRODUCTION for p in sorted((ROOT / top).rglob("*.py"))]
    return [p for p in files if p != KEYS_MODULE and "localstack" not in p.parts]


def test_no_key_is_built_outside_keys_module() -> None:
    # Prepare
    sources = production_sources()

    # Execute
    found = [o for path in sources for o in offences(path)]

    # Assert
    assert len(sources) > 50
    assert not found, "keys built outside fedfaas/keys.py:\n" + "\n".join(found)


def test_the_rule_catches_keys_built_by_hand(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "bad.py"
    bad.write_text(
        'NAMESPACE = "ff:jit"\n'
        'def lock(job, rnd, base):\n'
        '    return f"{base}:lock"\n'
        'def state(tenant, job, rnd):\n'
        '    return f"tenants/{tenant}/jobs/{job}/state/{rnd:06d}.ffu"\n'
        'def k(ns, *parts):\n'
        '    return ":".join((ns, *parts))\n'
        'def make(client, namespace="fedfaas:jit"):\n'
        '    return client\n')
    original = ROOT
    globals()["ROOT"] = tmp_path
    try:
        # Execute
        found = list(offences(bad))
    finally:
        globals()["ROOT"] = original

    # Assert
    lines = sorted(int(o.split(":")[1]) for o in found)
    assert lines == [1, 3, 5, 7, 8, 8]


REDIS_DOC = re.compile(r"^Redis (string|hash|set|zset|list|stream|counter)\b")


def _redis_key_functions() -> dict[str, str]:
    """Each Redis-key function of keys.py (its docstring names a Redis type), called with
    the deployment's namespaces and one value for every other argument."""
    samples = {"ns": keys.JIT_NAMESPACE, "prefix": keys.CE_PREFIX, "rnd": 3, "window": 7,
               "model_bytes": 100}
    names = {}
    for name, fn in inspect.getmembers(keys, inspect.isfunction):
        if fn.__module__ != keys.__name__ or not REDIS_DOC.match(inspect.getdoc(fn) or ""):
            continue
        params = inspect.signature(fn).parameters
        names[name] = fn(**{p: samples.get(p, "x") for p in params})
    return names


def test_redis_key_functions_name_distinct_concepts() -> None:
    # Execute
    names = _redis_key_functions()

    # Assert
    assert len(names) > 30
    by_key: dict[str, list[str]] = {}
    for fn, key in names.items():
        by_key.setdefault(key, []).append(fn)
    assert {k: f for k, f in by_key.items() if len(f) > 1} == {}
