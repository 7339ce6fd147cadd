"""What both live streams share: the count of open streams, and the two ways of sending one.

A stream is Server-Sent Events (``text/event-stream``), or a WebSocket when the request asks for
the upgrade at the same path: one JSON text message per event, ``{"event", "id", "data"}``, with
pings on idle connections (a client that stops answering them is closed). Either way a stream counts
against ``--max-streams``, ends cleanly on shutdown (the client resumes where it was) and ends, not
raises, when the store fails after it began.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import CxdbError, TooManyStreams
from .errors import DISCONNECTED
from .keys import SERVICE, SETTINGS

__all__ = ["STREAMS", "RETRY_MS", "Sink", "Streams", "serve_stream"]

log = logging.getLogger("cxdb.http")
RETRY_MS = 1000

Message = tuple[str, int, bytes]
"""(event name, id, JSON data) of one message."""


class Streams:
    """The streams of one application: how many are open, and the signal that ends them."""

    def __init__(self) -> None:
        self.open = 0
        self.closing = asyncio.Event()

    async def close_all(self, app: web.Application) -> None:
        """``on_shutdown``: every stream ends at its next step; clients resume elsewhere or later."""
        self.closing.set()
        if SERVICE in app:
            app[SERVICE].changes.interrupt()


STREAMS = web.AppKey("streams", Streams)


class Sink:
    """Where a stream's messages go."""

    async def send(self, messages: Iterable[Message]) -> None:
        raise NotImplementedError

    async def notice(self, event: str, data: object) -> None:
        """A message without an id (``reset``)."""
        raise NotImplementedError

    async def idle(self) -> None:
        """Nothing happened for a heartbeat's time."""


class _EventSource(Sink):
    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response

    async def send(self, messages: Iterable[Message]) -> None:
        body = b"".join(b"id: %d\nevent: %s\ndata: %s\n\n" % (id_, event.encode(), data)
                        for event, id_, data in messages)
        if body:
            await self._response.write(body)

    async def notice(self, event: str, data: object) -> None:
        await self._response.write(f"event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n")

    async def idle(self) -> None:
        await self._response.write(b": heartbeat\n\n")


class _WebSocket(Sink):
    def __init__(self, socket: web.WebSocketResponse) -> None:
        self._socket = socket

    async def send(self, messages: Iterable[Message]) -> None:
        for event, id_, data in messages:
            await self._socket.send_frame(b'{"event":"%s","id":"%d","data":%s}' % (event.encode(), id_, data),
                                          WSMsgType.TEXT)

    async def notice(self, event: str, data: object) -> None:
        await self._socket.send_frame(orjson.dumps({"event": event, "id": None, "data": data}), WSMsgType.TEXT)


Produce = Callable[[Sink], Awaitable[None]]


async def serve_stream(request: web.Request, produce: Produce) -> web.StreamResponse:
    """Open a stream (503 beyond ``--max-streams``) and run ``produce`` on it until it returns, the
    client goes away, or the store fails."""
    settings = request.app[SETTINGS]
    streams = request.app[STREAMS]
    if streams.open >= settings.max_streams:
        raise TooManyStreams("the server serves as many streams as it may; try again shortly",
                             {"max_streams": settings.max_streams})
    metrics = request.app[SERVICE].metrics
    streams.open += 1
    if metrics is not None:
        metrics.streams.inc()
    try:
        socket = web.WebSocketResponse(heartbeat=settings.event_heartbeat, max_msg_size=4096)
        if socket.can_prepare(request).ok:
            await socket.prepare(request)
            await _over_socket(socket, produce)
            return socket
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        await _guarded(produce(_EventSource(response)))
        return response
    finally:
        streams.open -= 1
        if metrics is not None:
            metrics.streams.dec()


async def _guarded(running: Awaitable[None]) -> None:
    try:
        await running
    except DISCONNECTED:
        pass  # the client went away: nobody reads the rest
    except CxdbError as exc:  # the store failed mid-stream: end it; the client resumes from its last id
        log.warning("stream ended: %s", exc.message)


async def _over_socket(socket: web.WebSocketResponse, produce: Produce) -> None:
    """Send while reading what the client sends (its pongs, its close); whichever ends first ends both."""
    loop = asyncio.get_running_loop()
    producer = loop.create_task(_guarded(produce(_WebSocket(socket))))
    reader = loop.create_task(_drain(socket))
    try:
        await asyncio.wait((producer, reader), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not producer.done():
            producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        if not socket.closed:
            await socket.close(code=WSCloseCode.GOING_AWAY)
        await asyncio.gather(reader, return_exceptions=True)


async def _drain(socket: web.WebSocketResponse) -> None:
    async for _ in socket:  # the client has nothing to say; its messages are read and dropped
        pass
