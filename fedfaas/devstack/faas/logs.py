"""JSON-lines logging for the router: one object per event, fields at the top level."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("fedfaas.devstack.faas")


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message`` with ``fields`` (function, call id, status, ...) as one JSON line."""
    log.log(level, message, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "event", **fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
