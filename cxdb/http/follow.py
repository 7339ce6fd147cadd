"""``GET /v1/contexts/{context_id}/follow``: one context's turns as they are appended, as Server-Sent
Events (or a WebSocket).

Each ``turn`` message carries a turn exactly as ``GET .../turns`` renders it with the same options,
and its id is the turn id. ``?after_turn_id=`` first sends the chain's turns after it (0: all of
them), ``?tail=K`` the newest K; then the stream goes on live. When the head moves to a turn that
does not descend from the last one sent, a ``rebase`` message names the newest turn both share (its
id is that turn's), and the turns from there follow. A client reconnecting with ``Last-Event-ID`` (or
``?last_event_id=``, where headers cannot be set) after the head moved away gets that rebase first;
an ``after_turn_id`` off the chain is a 404, as a page's cursor is.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from .access import namespace
from .keys import SERVICE, SETTINGS
from .params import path_id, query_int, query_u64, u64_value
from .streams import STREAMS, Sink, serve_stream
from .turns import MAX_PAGE, render_query

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/v1/contexts/{context_id}/follow")
async def follow(request: web.Request) -> web.StreamResponse:
    context_id = path_id(request, "context_id")
    query = request.query
    view, hint, options = render_query(query)
    # A reconnect names the last id it received: in the header (EventSource does), or as last_event_id
    # where headers cannot be set (a browser's WebSocket).
    header = request.headers.get("Last-Event-ID", "").strip() or query.get("last_event_id", "").strip()
    resume = bool(header)
    after = u64_value(header, "Last-Event-ID") if resume else query_u64(query, "after_turn_id")
    if "tail" in query and "after_turn_id" in query:
        raise BadRequest("give after_turn_id or tail, not both", {"parameter": "tail"})
    tail = query_int(query, "tail", 0, MAX_PAGE)
    follower = await request.app[SERVICE].follow(context_id, view, hint, options, after_turn_id=after, tail=tail,
                                                 resume=resume, namespace=namespace(request))
    streams = request.app[STREAMS]
    heartbeat = request.app[SETTINGS].event_heartbeat

    async def produce(sink: Sink) -> None:
        async for batch in follower.batches(heartbeat):
            if streams.closing.is_set():
                return
            if batch:
                await sink.send((item.event, item.turn_id, item.data) for item in batch)
            else:
                await sink.idle()

    return await serve_stream(request, produce)
