"""``GET /v1/events``: the store's changes as Server-Sent Events (or a WebSocket), resumable with no gap.

Each event carries ``id: <sequence>``. A client resumes with ``Last-Event-ID`` (or ``?after=``, for
clients that cannot set headers): every retained event after it is sent, then the stream goes on
live. Without a resume point the stream starts at the newest event. A resume point older than the
retention window gets ``event: reset`` first, with the oldest sequence still retained, so the client
knows to read the state again. The stream reads the durable log from its own position, so a slow
client falls behind without the server holding anything for it; it ends on shutdown, and the client
resumes where it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..errors import BadRequest
from ..service import Service
from ..service.events import EVENT_KINDS
from ..service.tenancy import ContextFilter
from .access import namespace
from .keys import SERVICE, SETTINGS
from .params import query_u64, u64_value
from .streams import STREAMS, Sink, Streams, serve_stream

__all__ = ["routes"]

routes = web.RouteTableDef()
READ_BATCH = 256
MAX_CONTEXT_FILTERS = 256


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


@routes.get("/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    after, wanted = _parse(request)
    service = request.app[SERVICE]
    space = namespace(request)
    visible = service.event_filter(space) if space is not None else None
    streams = request.app[STREAMS]
    heartbeat = request.app[SETTINGS].event_heartbeat
    oldest, newest = await service.event_bounds()

    async def produce(sink: Sink) -> None:
        position = newest if after is None else after
        if after is not None and after < newest and (oldest == 0 or oldest > after + 1):
            # Events after the resume point were pruned: say from where the log goes on.
            first = oldest if oldest else newest + 1
            await sink.notice("reset", {"oldest_sequence": str(first)})
            position = first - 1
        await _stream(sink, service, streams, position, wanted, heartbeat, visible)

    return await serve_stream(request, produce)


async def _stream(sink: Sink, service: Service, streams: Streams, position: int, wanted: _Filter,
                  heartbeat: float, visible: ContextFilter | None) -> None:
    changes = service.changes
    while not streams.closing.is_set():
        batch, position, more = await changes.read(position, READ_BATCH, wanted.contexts)
        batch = [item for item in batch if item.kind in wanted.kinds]
        if visible is not None:
            batch = [shown for item in batch if (shown := await visible.shown(item)) is not None]
        await sink.send((item.kind, item.sequence, item.data) for item in batch)
        if more:
            continue
        if not await changes.wait(position, heartbeat) and not streams.closing.is_set():
            await sink.idle()
