"""The reliability tests' own local stack: faults here never touch the shared session stacks.

One full stack (Redis, S3, the function router, the gateway) for the whole
package, because starting one takes ~15 s.  Each test leaves every component
running again, whatever it killed.  Short S3 and Redis timeouts make a frozen
server turn into a 503 within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from fedfaas.devstack.localstack.faults import heal
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from fedfaas.openfaas.client import FaasClient
from tests.reliability.faults import admin_token

FAULT_ENV = {
    "FEDFAAS_S3_TIMEOUT_S": "2",
    "FEDFAAS_REDIS_TIMEOUT_S": "2",
    "FEDFAAS_DRIVER_DELTA_S": "0.2",
    # A dead replica's unacknowledged arrival events are claimed by the next within seconds.
    "FEDFAAS_EVENT_CLAIM_IDLE_S": "2",
}


class FaultStack:
    """The stack plus what tests need to reach it."""

    def __init__(self, stack: LocalStack) -> None:
        env = stack.env()
        self.stack = stack
        self.base = env["FEDFAAS_GATEWAY_URL"]
        self.admin = admin_token(stack)
        self.faas = FaasClient.from_settings(stack.settings(), timeout=30)
        self.session = requests.Session()

    def ensure_running(self) -> None:
        """Wake any component a test left frozen and restart any it left dead."""
        heal(self.stack)


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A full local stack owned by the reliability tests."""
    stack = LocalStack(tmp_path_factory.mktemp("reliability"))
    stack.up(StackOptions(extra_env=FAULT_ENV))
    try:
        yield FaultStack(stack)
    finally:
        stack.down()


@pytest.fixture()
def fs(fault_stack: FaultStack) -> Iterator[FaultStack]:
    """The reliability stack, healthy at the start and the end of every test."""
    fault_stack.ensure_running()
    try:
        yield fault_stack
    finally:
        fault_stack.ensure_running()
