"""The ``fedfaas`` command line: bad option values get a usage error, not a traceback; ``env``
names only what runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fedfaas.devstack.cli import main
from fedfaas.devstack.localstack.stack import LocalStack


@pytest.mark.parametrize("args", [
    ["stack", "generate", "--cache-functions", "1"],
    ["stack", "generate", "--cache-functions", "-1"],
    ["stack", "generate", "--budget-bytes", "0"],
])
def test_stack_generate_rejects_impossible_layouts(args: list[str]) -> None:
    # Execute
    result = CliRunner().invoke(main, args)
    # Assert
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output
    assert not isinstance(result.exception, ValueError)


def test_stack_generate_accepts_the_smallest_layout() -> None:
    # Execute
    result = CliRunner().invoke(main, ["stack", "generate", "--cache-functions", "2"])
    # Assert
    assert result.exit_code == 0, result.output
    assert "cache-1:" in result.output and "cache-2:" not in result.output


@pytest.mark.parametrize("value", ["0", "-3"])
def test_up_rejects_a_non_positive_idle_timeout_before_starting_anything(value: str, tmp_path: Path) -> None:
    # Execute
    result = CliRunner().invoke(
        main, ["up", "--data-dir", str(tmp_path), "--only", "router", "--idle-timeout", value])
    # Assert
    assert result.exit_code == 2, result.output
    assert "--idle-timeout" in result.output
    assert not (tmp_path / "logs").exists()


def test_env_names_only_the_components_the_stack_started(backing_stack: LocalStack) -> None:
    # Prepare: the session's backing stack runs Redis and S3 alone.
    data_dir = str(backing_stack.data_dir)
    # Execute
    result = CliRunner().invoke(main, ["env", "--data-dir", data_dir])
    # Assert
    assert result.exit_code == 0, result.output
    names = {line.split("=", 1)[0].removeprefix("export ") for line in result.output.splitlines()}
    assert {"FEDFAAS_REDIS_URL", "FEDFAAS_S3_ENDPOINT", "FEDFAAS_SECRETS_DIR"} <= names
    assert not names & {"FEDFAAS_GATEWAY_URL", "FEDFAAS_FAAS_GATEWAY_URL"}
