"""The synchronous client, on one keep-alive ``http.client`` connection."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ..errors import TransportError
from ._common import (
    EventParser,
    Rebase,
    StreamPlan,
    Turn,
    base_headers,
    error_from,
    events_plan,
    follow_item,
    follow_plan,
    needs_head,
    transport_error,
)
from .methods import Call, Methods, Response

__all__ = ["Client"]

DEFAULT_URL = "http://127.0.0.1:9010"
_RETRYABLE = frozenset({"GET", "PUT"})


class _Unsent(Exception):
    """The request did not reach the server: connecting or sending it failed."""


class _Lost(Exception):
    """The request was sent, but no complete answer came back."""


class Client(Methods[Any]):
    """A cxdb client. Every method makes one request and returns its JSON as a :class:`Record`.

    Errors come back as typed exceptions (``NotFound``, ``Conflict`` …) carrying
    ``code``, ``message``, ``details`` and ``status``; a failure to talk to the server
    raises :class:`~cxdb.errors.TransportError`, whose ``details["request_sent"]`` says
    whether the server may have applied the request.

    One client can be shared by threads: each thread gets a keep-alive connection of its own.
    """

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 30.0,
                 headers: Mapping[str, str] | None = None, token: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._host, self._port, self._tls = parts.hostname, parts.port, parts.scheme == "https"
        self._timeout = timeout
        self._headers = base_headers(headers, token)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[http.client.HTTPConnection] = set()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            klass = http.client.HTTPSConnection if self._tls else http.client.HTTPConnection
            conn = klass(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

    def _exchange(self, call: Call) -> Response:
        conn = self._connection()
        headers = dict(self._headers)
        headers.update(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(call.method, self._prefix + call.path, body=call.body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            raise _Unsent(exc) from exc
        try:
            reply = conn.getresponse()
            body = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            raise _Lost(exc) from exc
        if reply.will_close:
            self._drop()
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, body)

    def _run(self, call: Call) -> Any:
        reused = getattr(self._local, "conn", None) is not None and self._local.conn.sock is not None
        try:
            response = self._exchange(call)
        except (_Unsent, _Lost) as exc:
            self._drop()
            cause = exc.__cause__
            # A kept-alive connection the server closed while idle fails like this before the server read
            # anything; requests that are safe to repeat are sent once more on a fresh connection.
            if not (reused and call.method in _RETRYABLE):
                raise self._transport_error(exc, cause) from cause
            try:
                response = self._exchange(call)
            except (_Unsent, _Lost) as again:
                self._drop()
                raise self._transport_error(again, again.__cause__) from again.__cause__
        if response.status >= 400:
            raise error_from(response.status, response.body)
        return call.parse(response)

    def _transport_error(self, failure: Exception, cause: BaseException | None) -> TransportError:
        return transport_error(self.base_url, cause, sent=isinstance(failure, _Lost))

    def iter_turns(self, context_id: int | str, page_size: int = 64, **options: Any) -> Iterator[Any]:
        """Every turn from the head to the root, newest first, one page at a time."""
        before = None
        while True:
            page = self.get_turns(context_id, limit=page_size, before_turn_id=before, **options)
            yield from reversed(page["turns"])
            before = page["next_before_turn_id"]
            if before is None:
                return

    def events(self, after: int | str | None = None, context_ids: tuple[int | str, ...] | list[int | str] = (),
               kinds: tuple[str, ...] | list[str] = (), reconnect: bool = True) -> Iterator[Any]:
        """``GET /v1/events``: the store's changes, each a :class:`Record` with ``event``, ``id`` and ``data``,
        forever. Starts after sequence ``after`` (or with the next change). When the connection drops
        or the server restarts, it reconnects and resumes after the last id it yielded, so nothing is
        missed or repeated; ``reconnect=False`` raises instead. Stop by breaking out of the loop.
        """
        yield from self._stream(events_plan(after, context_ids, kinds), reconnect)

    def follow(self, context_id: int | str, after_turn_id: int | str | None = None, tail: int | None = None,
               reconnect: bool = True, **options: Any) -> Iterator[Turn | Rebase]:
        """``GET /v1/contexts/{id}/follow``: the context's turns as they are appended, forever, each a
        :class:`Turn` rendered as :meth:`get_turns` renders it with the same ``options``; a
        :class:`Rebase` when the head moved away from the turns yielded so far. Starts after
        ``after_turn_id`` (0: from the first turn), or with the newest ``tail`` turns, or else after the
        head as it is when iteration begins (the first ``next()``). On a dropped connection it resumes
        after the last turn it yielded, or that head; ``reconnect=False`` raises instead.
        """
        head = None
        if needs_head(after_turn_id, tail):
            head = (self.get_context(context_id, include_lineage=False))["head_turn_id"]
        for event in self._stream(follow_plan(context_id, after_turn_id, tail, options, head), reconnect):
            item = follow_item(event)
            if item is not None:
                yield item

    def _stream(self, plan: StreamPlan, reconnect: bool) -> Iterator[Any]:
        while True:
            klass = http.client.HTTPSConnection if self._tls else http.client.HTTPConnection
            conn = klass(self._host, self._port, timeout=self._timeout)
            parser = EventParser()
            try:
                path, headers = plan.request()
                try:
                    conn.request("GET", self._prefix + path, headers={**self._headers, **headers})
                    reply = conn.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    if not reconnect:
                        raise transport_error(self.base_url, exc, sent=False) from exc
                else:
                    if reply.status >= 400:
                        body = reply.read()
                        if not (reconnect and reply.status == 503):
                            raise error_from(reply.status, body)
                    else:
                        try:
                            while line := reply.readline():
                                event = parser.feed(line.decode())
                                if event is not None:
                                    plan.seen(event)
                                    yield event
                        except (OSError, http.client.HTTPException) as exc:
                            if not reconnect:
                                raise transport_error(self.base_url, exc, sent=True) from exc
                        if not reconnect:
                            return  # the server ended the stream (it is shutting down)
            finally:
                conn.close()
            time.sleep(parser.retry)

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                self._all.discard(conn)

    def close(self) -> None:
        """Close every thread's connection; the client reconnects if used again."""
        with self._lock:
            connections, self._all = self._all, set()
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
