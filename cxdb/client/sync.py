"""The synchronous client, on one keep-alive ``http.client`` connection."""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ..errors import TransportError
from ._common import error_from
from .methods import Call, Methods, Response

__all__ = ["Client"]

DEFAULT_URL = "http://127.0.0.1:9010"
_RETRYABLE = frozenset({"GET", "PUT"})


class Client(Methods[Any]):
    """A cxdb client. Every method makes one request and returns its JSON as a :class:`Record`.

    Errors come back as typed exceptions (``NotFound``, ``Conflict`` …) carrying
    ``code``, ``message``, ``details`` and ``status``; a server that cannot be
    reached raises :class:`~cxdb.errors.TransportError`.
    """

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 30.0,
                 headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._host, self._port, self._tls = parts.hostname, parts.port, parts.scheme == "https"
        self._timeout = timeout
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            klass = http.client.HTTPSConnection if self._tls else http.client.HTTPConnection
            self._conn = klass(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _exchange(self, call: Call) -> Response:
        conn = self._connection()
        headers = dict(self._headers)
        headers.update(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(call.method, self._prefix + call.path, body=call.body, headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        if reply.will_close:
            self._drop()
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, body)

    def _run(self, call: Call) -> Any:
        reused = self._conn is not None and self._conn.sock is not None
        try:
            response = self._exchange(call)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            self._drop()
            if not reused or call.method not in _RETRYABLE:
                raise TransportError(f"cannot reach {self.base_url}", {"reason": str(exc)}) from exc
            # The server closed an idle keep-alive connection, most likely before reading this
            # request; only requests that are safe to repeat are sent again.
            try:
                response = self._exchange(call)
            except (OSError, http.client.HTTPException) as again:
                self._drop()
                raise TransportError(f"cannot reach {self.base_url}", {"reason": str(again)}) from again
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self._drop()
            raise TransportError(f"cannot reach {self.base_url}", {"reason": str(exc)}) from exc
        if response.status >= 400:
            raise error_from(response.status, response.body)
        return call.parse(response)

    def iter_turns(self, context_id: int | str, page_size: int = 64, **options: Any) -> Iterator[Any]:
        """Every turn from the head to the root, newest first, one page at a time."""
        before = None
        while True:
            page = self.get_turns(context_id, limit=page_size, before_turn_id=before, **options)
            yield from reversed(page["turns"])
            before = page["next_before_turn_id"]
            if before is None:
                return

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection; the client reconnects if used again."""
        self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
