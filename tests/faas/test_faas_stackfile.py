"""Reading stack.yml: env expansion, typed specs, and errors that name the culprit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedfaas.openfaas.stackfile import StackFileError, expand_env, load_stack, parse_duration

GOOD = """
version: 1.0
provider:
  name: openfaas
  gateway: ${GATEWAY:-http://127.0.0.1:8080}
configuration:
  copy:
    - ./shared
functions:
  agg-0:
    lang: python3-http
    handler: ./agg
    image: ${REGISTRY:-ttl.sh}/agg:${TAG-dev}
    environment:
      exec_timeout: 2m
      write_timeout: 90s
      max_inflight: 1
      DEBUG: true
    environment_file:
      - env.yml
    secrets: [s3-secret-key]
    labels:
      com.openfaas.scale.min: "0"
      com.openfaas.scale.max: "3"
      com.openfaas.scale.zero: "true"
      com.openfaas.scale.zero-duration: 1m30s
    annotations:
      topic: fl
    limits:
      memory: 512Mi
    requests:
      cpu: 100m
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "env.yml").write_text("environment:\n  FROM_FILE: yes-file\n  DEBUG: overridden\n")
    path = tmp_path / "stack.yml"
    path.write_text(text)
    return path


def test_good_stack_becomes_typed_specs(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, GOOD)
    # Execute
    stack = load_stack(path, env={"REGISTRY": "reg.local", "TAG": "v1"})
    spec = stack.functions["agg-0"]
    # Assert
    assert stack.version == "1.0"
    assert stack.gateway == "http://127.0.0.1:8080"
    assert stack.copy_paths == ((tmp_path / "shared").resolve(),)
    assert spec.image == "reg.local/agg:v1"
    assert spec.handler == (tmp_path / "agg").resolve()
    assert spec.environment["DEBUG"] == "true"  # the stack file wins over environment_file
    assert spec.environment["FROM_FILE"] == "yes-file"
    assert spec.secrets == ("s3-secret-key",)
    assert spec.annotations == {"topic": "fl"}
    assert spec.limits == {"memory": "512Mi"}
    assert spec.requests == {"cpu": "100m"}
    assert (spec.scale_min, spec.scale_max, spec.scale_zero) == (0, 3, True)
    assert spec.scale_zero_duration_s == 90.0
    assert spec.exec_timeout_s == 90.0  # the shorter of exec_timeout and write_timeout
    assert spec.max_inflight == 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  agg-0:", "  Agg_0:", "function 'Agg_0': name must be a DNS label"),
        ('com.openfaas.scale.max: "3"', "com.openfaas.scale.max: 3", "function 'agg-0': labels: value of"),
        ("version: 1.0", "version: 2.0", "version must be 1.0"),
        ("  name: openfaas", "  name: aws", "provider.name must be 'openfaas'"),
        (
            'com.openfaas.scale.min: "0"',
            'com.openfaas.scale.min: "4"',
            "function 'agg-0': label com.openfaas.scale.min=4 exceeds com.openfaas.scale.max=3",
        ),
        ("zero-duration: 1m30s", "zero-duration: soon", "function 'agg-0': label com.openfaas.scale.zero-"),
        ("    lang: python3-http", "    lang: [x]", "function 'agg-0': field 'lang'"),
        ("    annotations:", "    annotation:", "function 'agg-0': unknown field(s) annotation"),
        ("    - ./shared", "    - ../outside", "configuration.copy: '../outside' is outside"),
        (
            "      max_inflight: 1",
            "      max_inflight: 0",
            "function 'agg-0': environment max_inflight: must be at least 1",
        ),
    ],
)
def test_bad_stack_names_the_offending_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    # Prepare
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    # Execute / Assert
    with pytest.raises(StackFileError, match=re.escape(message)):
        load_stack(path)


def test_expand_env_follows_shell_defaults() -> None:
    # Prepare
    env = {"SET": "v", "EMPTY": ""}
    text = "${SET} ${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET} $PLAIN"
    # Execute
    expanded = expand_env(text, env)
    # Assert
    assert expanded == "v v d  d  $PLAIN"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("10", 10.0), (5, 5.0), ("1.5s", 1.5)],
)
def test_parse_duration_reads_go_durations_and_numbers(value: object, seconds: float) -> None:
    # Execute / Assert
    assert parse_duration(value, "x") == seconds


@pytest.mark.parametrize("value", ["abc", "5 m", "-1s", True, "1m-"])
def test_parse_duration_refuses_garbage(value: object) -> None:
    # Execute / Assert
    with pytest.raises(StackFileError, match=r"^where: "):
        parse_duration(value, "where")
