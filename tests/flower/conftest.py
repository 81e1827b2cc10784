"""Fixtures of the Flower integration tests: an admin client and the example module."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import Api

# Flower reads this when first imported; tests must not send usage telemetry.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from fedfaas.client import AdminClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower" / "digits_fedavg.py"


@pytest.fixture(scope="session")
def admin(stack_api: Api) -> Iterator[AdminClient]:
    """The operator's admin client on the full local stack."""
    client = AdminClient(stack_api.base, stack_api.admin_token, timeout=(5, 60))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def example() -> ModuleType:
    """``examples/flower/digits_fedavg.py`` as a module."""
    spec = importlib.util.spec_from_file_location("digits_fedavg_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
