"""``GET /v1/events``: the store's changes as Server-Sent Events, resumable with no gap.

Each event carries ``id: <sequence>``. A client resumes with ``Last-Event-ID`` (or ``?after=``, for
clients that cannot set headers): every retained event after it is sent, then the stream goes on
live. Without a resume point the stream starts at the newest event. A resume point older than the
retention window gets ``event: reset`` first, with the oldest sequence still retained, so the client
knows to read the state again. The stream reads the durable log from its own position, so a slow
client falls behind without the server holding anything for it; it ends on shutdown, and the client
resumes where it was.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
from aiohttp import web

from ..errors import BadRequest, CxdbError, TooManyStreams
from ..service import Service
from ..service.events import EVENT_KINDS
from .errors import DISCONNECTED
from .keys import SERVICE, SETTINGS
from .params import query_u64, u64_value

__all__ = ["STREAMS", "Streams", "routes"]

routes = web.RouteTableDef()
log = logging.getLogger("cxdb.http")
READ_BATCH = 256
MAX_CONTEXT_FILTERS = 256
RETRY_MS = 1000


class Streams:
    """The event streams of one application: how many are open, and the signal that ends them."""

    def __init__(self) -> None:
        self.open = 0
        self.closing = asyncio.Event()

    async def close_all(self, app: web.Application) -> None:
        """``on_shutdown``: every stream ends at its next step; clients resume elsewhere or later."""
        self.closing.set()
        if SERVICE in app:
            app[SERVICE].changes.interrupt()


STREAMS = web.AppKey("streams", Streams)


@dataclass(frozen=True, slots=True)
class _Filter:
    contexts: frozenset[int] | None
    kinds: frozenset[str]


def _parse(request: web.Request) -> tuple[int | None, _Filter]:
    query = request.query
    header = request.headers.get("Last-Event-ID")
    after = u64_value(header.strip(), "Last-Event-ID") if header is not None and header.strip() else None
    if after is None:
        after = query_u64(query, "after")
    texts = query.getall("context_id", [])
    if len(texts) > MAX_CONTEXT_FILTERS:
        raise BadRequest(f"at most {MAX_CONTEXT_FILTERS} context_id filters", {"parameter": "context_id"})
    contexts = frozenset(u64_value(text, "context_id") for text in texts) if texts else None
    kinds = frozenset(EVENT_KINDS)
    if "events" in query:
        asked = {part.strip() for part in query["events"].split(",") if part.strip()}
        if not asked or not asked <= kinds:
            raise BadRequest(f"events must name some of {', '.join(EVENT_KINDS)}",
                             {"parameter": "events", "value": query["events"]})
        kinds = frozenset(asked)
    return after, _Filter(contexts, kinds)


def _frame(event: str, data: object, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    after, wanted = _parse(request)
    service = request.app[SERVICE]
    settings = request.app[SETTINGS]
    streams = request.app[STREAMS]
    if streams.open >= settings.max_streams:
        raise TooManyStreams("the server serves as many event streams as it may; try again shortly",
                             {"max_streams": settings.max_streams})
    oldest, newest = await service.event_bounds()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    streams.open += 1
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        position = newest if after is None else after
        if after is not None and after < newest and (oldest == 0 or oldest > after + 1):
            # Events after the resume point were pruned: say from where the log goes on.
            first = oldest if oldest else newest + 1
            await response.write(_frame("reset", {"oldest_sequence": str(first)}))
            position = first - 1
        await _stream(response, service, streams, position, wanted, settings.event_heartbeat)
    except DISCONNECTED:
        pass  # the client went away: nobody reads the rest
    except CxdbError as exc:  # the store failed mid-stream: end it; the client resumes from its last id
        log.warning("event stream ended: %s", exc.message)
    finally:
        streams.open -= 1
    return response


async def _stream(response: web.StreamResponse, service: Service, streams: Streams, position: int,
                  wanted: _Filter, heartbeat: float) -> None:
    while not streams.closing.is_set():
        batch, position, more = await service.changes.read(position, READ_BATCH, wanted.contexts)
        frames = [b"id: %d\nevent: %s\ndata: %s\n\n" % (item.sequence, item.kind.encode(), item.data)
                  for item in batch if item.kind in wanted.kinds]
        if frames:
            await response.write(b"".join(frames))
        if more:
            continue
        if not await service.changes.wait(position, heartbeat) and not streams.closing.is_set():
            await response.write(b": heartbeat\n\n")
