"""The HTTP server around the app: a deadline on every connection, and protocol errors as the envelope.

aiohttp bounds only idle keep-alive connections. Here every connection also has:

- a **header deadline**: from the first byte of a request (or from accepting the
  connection), its head must arrive within ``header_timeout``;
- a **body deadline**, by progress: while a handler waits for the body, some of it
  must arrive every ``body_timeout``, so a slow but live upload of a big body
  survives and a stalled one does not;
- a **send deadline**, by progress: while a response waits in the connection's
  write buffer, the client must take some of it every ``send_timeout``, so a
  client that asks for a big page and never reads it does not hold the
  response (and its handler) forever;
- the **idle deadline**: aiohttp's keep-alive timeout, set to ``idle_timeout``.

One sweep a second checks every connection of the server, so a deadline costs
nothing per request. Requests that aiohttp's parser refuses (a bad method, an
oversized header, invalid characters) get the contract's JSON envelope, and are
logged without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..config import Settings
from ..errors import BadRequest, CxdbError, error_class
from .errors import error_response
from .keys import SERVICE

__all__ = ["Connection", "Guard", "Runner"]

log = logging.getLogger("cxdb.http")
SWEEP_SECONDS = 1.0


class Guard:
    """The connections of one server and their deadlines."""

    def __init__(self, settings: Settings, app: web.Application) -> None:
        self.app = app
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.send_timeout = settings.send_timeout
        self.connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep())

    def count_connection(self, delta: int) -> None:
        service = self.app.get(SERVICE)
        if service is not None and service.metrics is not None:
            service.metrics.connections.inc(delta)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            service = self.app.get(SERVICE)
            if service is not None and service.metrics is not None:
                service.metrics.flush()  # this worker's counts reach the shared metrics files
            now = loop.time()
            for connection in list(self.connections):
                try:
                    reason = (connection.overdue(now, self.header_timeout, self.body_timeout)
                              or connection.stalled(now, self.send_timeout))
                    if reason is not None:
                        log.debug("closing a connection from %s: %s", connection.peer, reason)
                        connection.abort()
                except Exception:  # one odd connection must not end the sweep for every other
                    log.exception("checking a connection's deadlines failed")

    def abort_unfinished(self) -> int:
        """Close every connection that is idle or still receiving a request (head or body); return how
        many. Requests already received keep running: their writes finish and are answered."""
        closed = 0
        for connection in list(self.connections):
            if connection.receiving():
                connection.force_close()
                closed += 1
        return closed


class Connection(RequestHandler):
    """aiohttp's request handler, with the progress the guard's deadlines need."""

    def __init__(self, manager: web.Server, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.head_since: float | None = None
        """When the current request's head began to arrive (or the connection opened); None once a
        handler has it, until the next byte comes."""
        self.last_data = 0.0
        self.unsent = 0
        self.unsent_since: float | None = None
        """Bytes of response in the write buffer at the last sweep, and since when none was taken."""
        self.request: BaseRequest | None = None
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.head_since = self.last_data = self._loop.time()
        self.peer = transport.get_extra_info("peername")
        self.guard.connections.add(self)
        self.guard.count_connection(1)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self in self.guard.connections:
            self.guard.connections.discard(self)
            self.guard.count_connection(-1)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_data = self._loop.time()
        if self.request is None and self.head_since is None:
            self.head_since = self.last_data
        super().data_received(data)

    def overdue(self, now: float, header_timeout: float, body_timeout: float) -> str | None:
        """Why this connection is past a deadline, or None."""
        request = self.request
        if request is None:
            if self.head_since is not None and now - self.head_since > header_timeout:
                return f"no complete request head within {header_timeout:g} s"
            return None
        if not request.content.is_eof() and now - self.last_data > body_timeout:
            return f"no progress on the request body for {body_timeout:g} s"
        return None

    def abort(self) -> None:
        """Close at once, dropping whatever waits to be sent (a graceful close would wait for the very
        client that stopped reading)."""
        transport = self.transport
        self.force_close()
        if transport is not None:
            transport.abort()

    def stalled(self, now: float, send_timeout: float) -> str | None:
        """Why this connection's client is past the send deadline, or None."""
        transport = self.transport
        size = transport.get_write_buffer_size() if transport is not None else 0
        if size == 0:
            self.unsent, self.unsent_since = 0, None
            return None
        if self.unsent_since is None or size < self.unsent:  # a response waits, or the client took some
            self.unsent_since = now
        self.unsent = size
        if now - self.unsent_since > send_timeout:
            return f"the client read none of {size} waiting bytes for {send_timeout:g} s"
        return None

    def receiving(self) -> bool:
        """Idle, or still receiving a request: nothing of it has reached a handler that can finish it."""
        return self.request is None or not self.request.content.is_eof()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A request the parser refused, or a failure outside the app: the envelope, one log line."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started")
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            error: CxdbError = CxdbError("Internal server error")
        else:
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
            log.log(level, "refused a malformed request from %s: %s", request.remote, message or exc)
            klass = error_class(status, BadRequest)
            error = klass(_first_line(message) or "Malformed request", {})
        request_id = secrets.token_hex(8)  # the parser refused it: no app, and a rare event
        response = error_response(error, {"X-Request-Id": request_id}, request_id)
        response.force_close()
        return response


def _first_line(message: str | None) -> str:
    return (message or "").strip().splitlines()[0][:200] if message and message.strip() else ""


class _Server(web.Server):
    """Makes :class:`Connection` handlers (see :meth:`Runner._make_server`)."""

    guard: Guard

    def __call__(self) -> RequestHandler:
        return Connection(self, self.guard, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections have deadlines, and whose shutdown waits at most the grace."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        # The access log is written by the front middleware (cxdb.http.front), not by aiohttp.
        super().__init__(app, access_log=None, keepalive_timeout=settings.idle_timeout,
                         shutdown_timeout=settings.shutdown_grace)
        self.guard = Guard(settings, app)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside the app; this only changes which handler class it makes.
        server.__class__ = _Server
        server.guard = self.guard  # type: ignore[attr-defined]
        self.guard.start()
        return server

    async def cleanup(self) -> None:
        await self.guard.stop()
        await super().cleanup()
