"""Logging: text or JSON lines, with the request id on every line a request causes.

``configure`` installs one handler on the root logger. The request id of the request being handled
lives in a context variable, which asyncio copies into every task the request starts, and a filter
adds it to each record, so a traceback logged deep in the service carries it too.

JSON lines have stable field names: ``time``, ``level``, ``logger``, ``message``, then
``request_id`` when there is one, the access fields (``method``, ``route``, ``status``,
``duration_ms``, ``bytes``, ``remote``) on access lines, and ``exception`` for tracebacks.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import sys

import orjson

__all__ = ["ACCESS_FIELDS", "REQUEST_ID", "configure"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("cxdb_request_id", default=None)
ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "bytes", "remote")
FORMATS = ("text", "json")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    """The time, the level, the logger and the message, then ``request_id=`` when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head} request_id={request_id}{newline}{rest}"


def configure(level: str, fmt: str) -> None:
    """Log to standard error at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
