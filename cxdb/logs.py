"""Logging: text or JSON lines, with the request id on every line a request causes.

``configure`` installs one handler on the root logger. The request id of the request being handled
lives in a context variable, which asyncio copies into every task the request starts, and a filter
adds it to each record, so a traceback logged deep in the service carries it too.

JSON lines have stable field names: ``time``, ``level``, ``logger``, ``message``, then
``request_id`` when there is one, the access fields (``method``, ``route``, ``status``,
``duration_ms``, ``bytes``, ``remote``) on access lines, and ``exception`` for tracebacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import os
import select
import sys
import threading
import time
import weakref

import orjson

__all__ = ["ACCESS_FIELDS", "REQUEST_ID", "configure", "flush"]

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
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head} request_id={request_id}{newline}{rest}"


class _BufferedHandler(logging.Handler):
    """Collects formatted lines and writes them to standard error in batches: every FLUSH_SECONDS (a
    thread of its own), when 64 KiB are waiting, and on :func:`flush`. A write system call per batch,
    not per line: one access line per request made the log a fifth of an append's cost.

    Each write holds whole lines and at most PIPE_BUF bytes (unless one line is longer), so the lines
    of several workers sharing standard error never interleave within a line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fd = sys.stderr.fileno()
        self._pending: list[bytes] = []
        self._size = 0
        self._closed = False
        self._start_flusher()
        # Threads do not survive fork(): each worker of --workers N starts its own flusher.
        handler = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart(handler))

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(target=self._flush_often, name="cxdb-log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        with self.lock or contextlib.nullcontext():
            self._pending.append(line)
            self._size += len(line)
            full = self._size >= BATCH_BYTES
        if full:
            self.flush_now()

    def flush_now(self) -> None:
        with self.lock or contextlib.nullcontext():
            pending, self._pending, self._size = self._pending, [], 0
            chunk: list[bytes] = []
            size = 0
            for line in pending:
                if chunk and size + len(line) > select.PIPE_BUF:
                    self._write(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            pass  # standard error is gone: nowhere to say so

    def _flush_often(self) -> None:
        while not self._closed:
            time.sleep(FLUSH_SECONDS)
            self.flush_now()

    def close(self) -> None:
        self._closed = True
        self.flush_now()
        super().close()


def _restart(handler: weakref.ref[_BufferedHandler]) -> None:
    found = handler()
    if found is not None and not found._closed:
        found._start_flusher()


BATCH_BYTES = 1 << 16
FLUSH_SECONDS = 0.2


def flush() -> None:
    """Write out every buffered log line now (before ``os._exit``, which skips the usual flush)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _BufferedHandler):
            handler.flush_now()


def configure(level: str, fmt: str) -> None:
    """Log to standard error at ``level`` in ``fmt`` (``text`` or ``json``).

    Records skip what neither format shows (the calling frame, thread and process names): finding
    the caller alone walked the stack on every access line.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch for findCaller
    handler = _BufferedHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
