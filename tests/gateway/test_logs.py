"""Structured logs: JSON lines tagged with request id, job and round; request ids echoed."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path

import pytest

from fedfaas.devstack.localstack.stack import LocalStack
from gateway.logs import ContextFilter, JsonFormatter, bind
from tests.conftest import Api


def _logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_a_record_is_one_json_line_with_bound_context_and_extra_fields() -> None:
    # Prepare
    stream = io.StringIO()
    logger = _logger(stream)
    # Execute
    with bind(job="j-1", round=3):
        logger.info("folded %d updates", 2, extra={"party": "alice"})
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logger.exception("step failed")
    logger.info("outside")
    # Assert
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "folded 2 updates" and first["level"] == "INFO"
    assert (first["job"], first["round"], first["party"]) == ("j-1", 3, "alice")
    assert second["job"] == "j-1" and "ValueError: bad\nvalue" in second["exc"]
    assert "job" not in third and "round" not in third


@pytest.mark.stack
def test_request_ids_are_echoed_and_generated(api: Api) -> None:
    # Execute
    given = api.call("GET", "/healthz", headers={"X-Request-Id": "trace-42"})
    call_id = api.call("GET", "/healthz", headers={"X-Call-Id": "call.7:a"})
    unsafe = api.call("GET", "/healthz", headers={"X-Request-Id": "a b\tc"})
    fresh = [api.call("GET", "/healthz") for _ in range(2)]
    # Assert
    assert given.headers["X-Request-Id"] == given.headers["X-Call-Id"] == "trace-42"
    assert call_id.headers["X-Request-Id"] == "call.7:a"
    assert unsafe.headers["X-Request-Id"] != "a b\tc" and len(unsafe.headers["X-Request-Id"]) == 32
    assert fresh[0].headers["X-Request-Id"] != fresh[1].headers["X-Request-Id"]


@pytest.mark.stack
def test_the_gateway_logs_json_lines_with_request_id_job_and_round(api: Api, api_stack: LocalStack) -> None:
    # Prepare
    request_id = f"log-{uuid.uuid4().hex}"
    log_file = Path(api_stack.data_dir) / "logs" / "gateway.log"
    # Execute
    resp = api.call("GET", "/v1/jobs/no-such-job/rounds/4", api.admin_token,
                    headers={"X-Request-Id": request_id})
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while not records and time.monotonic() < deadline:
        lines = [line for line in log_file.read_text().splitlines() if request_id in line]
        records = [json.loads(line) for line in lines]
        time.sleep(0.05)
    # Assert
    assert resp.status_code == 404
    assert len(records) == 1
    record = records[0]
    assert (record["request_id"], record["job"], record["round"]) == (request_id, "no-such-job", 4)
    assert record["status"] == 404 and record["logger"] == "fedfaas.gateway.access"


def test_gunicorn_logger_class_writes_json_lines(tmp_path: Path) -> None:
    # Prepare
    from gunicorn.config import Config

    from gateway.logs import GunicornLogger

    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    logger = GunicornLogger(config)
    # Execute
    logger.info("Booting worker with pid: %s", 42)
    for handler in list(logger.error_log.handlers):  # gunicorn's loggers are process-wide
        logger.error_log.removeHandler(handler)
        handler.close()
    # Assert
    record = json.loads((tmp_path / "error.log").read_text().splitlines()[-1])
    assert record["message"] == "Booting worker with pid: 42" and record["logger"] == "gunicorn.error"
