"""A gateway with small limits, owned by the security tests: 1 MiB bodies, 20 requests a minute.

Redis, S3 and the gateway only (no functions).  Tests that need no special
limit use the shared ``api`` stack instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from tests.conftest import Api
from tests.reliability.faults import admin_token

MAX_BODY = 1024 * 1024
RATE_PER_MIN = 20


@pytest.fixture(scope="package")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Redis, S3 and a gateway with ``MAX_BODY`` and ``RATE_PER_MIN``."""
    stack = LocalStack(tmp_path_factory.mktemp("limited"))
    stack.up(StackOptions(components=("redis", "s3", "gateway"), extra_env={
        "FEDFAAS_MAX_BODY_BYTES": str(MAX_BODY),
        "FEDFAAS_RATE_LIMIT_PER_MIN": str(RATE_PER_MIN),
        "FEDFAAS_FLSTORE": "0",
        "FEDFAAS_DRIVER": "0",
    }))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="package")
def limited_api(limited_stack: LocalStack) -> Api:
    """HTTP helper for the limited gateway, with the operator's token."""
    return Api(limited_stack.env()["FEDFAAS_GATEWAY_URL"], admin_token(limited_stack))
