"""Structured logs: one JSON object per line, with the request id of the request being served.

Every process of the service (API, worker, CLI) logs through `configure_logging`, so a
log shipper reads one format. The API sets `REQUEST_ID` for each request (the
`X-Request-ID` header it received, or a new one) and every line logged while serving it
carries it.

>>> import io, json, logging
>>> stream = io.StringIO()
>>> configure_logging("info", stream=stream)
>>> token = REQUEST_ID.set("r-1")
>>> logging.getLogger("demo").info("looked up", extra={"entities": 2})
>>> REQUEST_ID.reset(token)
>>> line = json.loads(stream.getvalue())
>>> (line["level"], line["logger"], line["message"], line["request_id"], line["entities"])
('info', 'demo', 'looked up', 'r-1', 2)
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
# (uvicorn adds `color_message`, the message with terminal colours: not for a log file.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, ...extra, "exc"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str | int = "warning", stream: IO[str] | None = None) -> None:
    """Send every logger's records, as JSON lines, to `stream` (default stderr)."""
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(json_handler(stream))
    root.setLevel(level.upper() if isinstance(level, str) else level)


def logging_config(level: str) -> dict[str, Any]:
    """The same set-up as a `logging.config.dictConfig` mapping (for Faust's worker)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "json", "level": 0}
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
