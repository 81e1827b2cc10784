"""The project's stack.yml follows the rules `faas-cli deploy` and OpenFaaS CE impose."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from fedfaas.layout import generate, render
from fedfaas.openfaas.stackfile import load_stack

ROOT = Path(__file__).resolve().parents[2]
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
GATEWAY_UPSTREAM_TIMEOUT_S = 305  # deploy/k8s/openfaas-values.yaml: gateway.upstreamTimeout


def _raw() -> dict:
    return yaml.safe_load((ROOT / "stack.yml").read_text())


def test_header_and_provider() -> None:
    raw = _raw()
    assert str(raw["version"]) == "1.0"
    assert raw["provider"]["name"] == "openfaas"
    assert raw["provider"]["gateway"].startswith("${OPENFAAS_URL:-")
    assert {"name": "python3-http-debian"} in raw["configuration"]["templates"]
    for path in raw["configuration"]["copy"]:
        assert (ROOT / path).is_dir(), path


def test_fits_community_edition_and_is_well_formed() -> None:
    raw = _raw()
    stack = load_stack(ROOT / "stack.yml")
    assert 1 <= len(raw["functions"]) <= 15
    for name, fn in raw["functions"].items():
        assert DNS_LABEL.match(name), name
        assert fn["lang"] == "python3-http-debian", name
        assert (ROOT / fn["handler"] / "handler.py").is_file(), name
        assert (ROOT / fn["handler"] / "requirements.txt").is_file(), name
        assert all(isinstance(v, str) for v in fn.get("labels", {}).values()), name
        assert all(isinstance(v, str) for v in fn.get("annotations", {}).values()), name
        assert all(isinstance(v, str) for v in fn.get("environment", {}).values()), name
        spec = stack.functions[name]
        assert (spec.scale_max or 1) <= 5, name
        assert (spec.scale_min or 0) <= (spec.scale_max or 5), name
        timeout = spec.exec_timeout_s or 0
        assert 0 < timeout <= GATEWAY_UPSTREAM_TIMEOUT_S, name
        assert not any(k.startswith("com.openfaas.scale.zero") and k.endswith("zero") and v not in
                       ("true", "false") for k, v in fn.get("labels", {}).items()), name


def test_secrets_are_declared_for_s3_access() -> None:
    for name, fn in _raw()["functions"].items():
        assert {"s3-access-key", "s3-secret-key"} <= set(fn.get("secrets", [])), name


def test_every_function_declares_the_internal_token() -> None:
    # Every function serves tenants' data and refuses calls without this secret.
    for name, fn in _raw()["functions"].items():
        assert "fedfaas-internal-token" in fn.get("secrets", []), name


def test_stack_yml_is_what_the_layout_generator_writes() -> None:
    # Execute
    generated = render(generate())
    # Assert
    assert (ROOT / "stack.yml").read_text() == generated
