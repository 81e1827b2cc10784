"""Structured logs of the gateway: one JSON object per line, tagged with what is being served.

Every record carries the request id of the HTTP call it was written during
(``X-Request-Id`` or OpenFaaS's ``X-Call-Id`` when the caller sent a sane one,
else a fresh id; echoed in both response headers), and the job, round, party
and query it concerns where the URL or the caller's token says so.  Background
loops (round driver, FLStore placer) tag their records with :func:`bind`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import Blueprint, Response, g, has_request_context, request
from gunicorn.glogging import Logger as _GunicornBaseLogger

REQUEST_ID_HEADERS = ("X-Request-Id", "X-Call-Id")
# Ids are echoed into headers and logs: accept only short, printable tokens.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Routes scraped every few seconds by probes; logged at DEBUG to keep the log readable.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# ``LogRecord`` attributes that are not ``extra=`` fields of the call.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
CONTEXT_FIELDS = ("request_id", "tenant", "job", "round", "party", "query_id")

_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("fedfaas_log_fields",
                                                                            default=None)
log = logging.getLogger("fedfaas.gateway.access")
blueprint = Blueprint("logs", __name__)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Tag every record logged in this block (this thread or task) with ``fields``.

    Examples
    --------
    >>> with bind(job="j-1", round=3):
    ...     log.info("finalising")  # doctest: +SKIP
    """
    current = _bound.get() or {}
    token = _bound.set({**current, **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def _round_number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 10 else None


def request_fields() -> dict[str, Any]:
    """Context of the HTTP request being served (empty outside a request)."""
    if not has_request_context():
        return {}
    args = request.view_args or {}
    out: dict[str, Any] = {
        "request_id": g.get("request_id"),
        "job": args.get("job_id"),
        "round": _round_number(args.get("rnd")),
        "party": args.get("party_id"),
        "query_id": args.get("request_id"),
    }
    principal = g.get("principal")
    if principal is not None:
        out["tenant"] = principal.tenant
        out["party"] = out["party"] or principal.party
    return {k: v for k, v in out.items() if v is not None}


class ContextFilter(logging.Filter):
    """Copy the request's and :func:`bind`'s fields onto each record, in the logging thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**(_bound.get() or {}), **request_fields()}
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context and ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines.

    Also re-formats gunicorn's own loggers when they exist, so a worker writes
    nothing but JSON.  Returns the installed handler.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        for existing in logging.getLogger(name).handlers:
            existing.setFormatter(JsonFormatter())
            existing.addFilter(ContextFilter())
    return handler


class GunicornLogger(_GunicornBaseLogger):
    """gunicorn's logger writing JSON lines too: ``gunicorn --logger-class gateway.logs.GunicornLogger``.

    Without it the master's own lines (start, signals, worker boots) stay plain text.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())


def incoming_request_id() -> str:
    """The caller's request id when it sent a sane one, else a fresh one."""
    for header in REQUEST_ID_HEADERS:
        value = request.headers.get(header, "")
        if _SANE_ID.match(value):
            return value
    return uuid.uuid4().hex


@blueprint.before_app_request
def _assign_request_id() -> None:
    g.request_id = incoming_request_id()
    g.setdefault("started", time.perf_counter())


@blueprint.after_app_request
def _echo_and_log(resp: Response) -> Response:
    request_id = g.get("request_id") or incoming_request_id()
    for header in REQUEST_ID_HEADERS:
        resp.headers[header] = request_id
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    level = logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO
    log.log(level, "%s %s %d", request.method, request.path, resp.status_code,
            extra={"status": resp.status_code, "duration_ms": round(elapsed * 1000, 3),
                   "bytes_in": request.content_length or 0})
    return resp
