"""``/mcp``: the Model Context Protocol over its Streamable HTTP transport, in aiohttp.

The official ``mcp`` SDK serves only as a Starlette app; rather than run a second web framework
beside this one, the transport is implemented here on the protocol's specification, for the
handshake revisions the SDK negotiates (:data:`VERSIONS`, here) and the current, sessionless one
(:mod:`cxdb.http.mcp_modern`), and proven with the SDK's own client in the tests. docs/mcp.md says more.

- ``POST /mcp`` takes one JSON-RPC message (or, in 2025-03-26, a batch). ``initialize`` opens a session
  (``Mcp-Session-Id``); every later request names it (400 without, 404 for one unknown or expired).
  Requests are answered as ``application/json``; notifications and responses get 202.
- ``GET /mcp`` is the session's stream of server messages (Server-Sent Events): resource updates of
  the contexts it subscribed to. It counts against ``--max-streams``.
- ``DELETE /mcp`` ends the session.

A session belongs to the token that opened it (another token naming it gets 404). Sessions are
bounded per process (:data:`MAX_SESSIONS`, least recently used first out, and idle ones expire),
and so are each session's subscriptions; a client that disappears leaves a session that expires.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest, CxdbError
from ..service.tokens import Grant
from .access import GRANT
from .keys import SERVICE, SETTINGS
from .mcp_modern import MODERN, serve_modern
from .mcp_sessions import MCP_SESSIONS, SESSION_HEADER, McpSessions, Session, updates
from .mcp_tools import (
    CAPABILITIES,
    INSTRUCTIONS,
    SERVER_INFO,
    McpError,
    as_mcp_error,
    context_of,
    handle,
    reply,
)
from .params import read_json
from .streams import STREAMS, Sink, serve_stream

__all__ = ["MCP_SESSIONS", "McpSessions", "routes"]

log = logging.getLogger("cxdb.mcp")
routes = web.RouteTableDef()
VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
"""The protocol revisions served, newest first."""
VERSION_HEADER = "MCP-Protocol-Version"





def _version(request: web.Request, session: Session | None) -> None:
    asked = request.headers.get(VERSION_HEADER)
    if asked is not None and asked not in VERSIONS and asked != MODERN:
        raise BadRequest(f"{VERSION_HEADER} {asked!r} is not served: {', '.join(VERSIONS)}",
                         {"supported": list(VERSIONS)})


async def _one(request: web.Request, message: Any, sessions: McpSessions, session: Session | None,
               grant: Grant | None) -> tuple[dict[str, Any] | None, Session | None]:
    """The reply to one message (None for a notification or a response), and the session it opened."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"),
                                                                                            str):
        if isinstance(message, dict) and ("result" in message or "error" in message):
            return None, None  # a response to a request of ours: none is ever sent
        return reply(message.get("id") if isinstance(message, dict) else None,
                      error=McpError(-32600, "not a JSON-RPC 2.0 request")), None
    method = message["method"]
    request_id = message.get("id")
    params = message.get("params") or {}
    if "id" not in message:
        return None, None  # notifications (initialized, cancelled) need no answer
    if not isinstance(params, dict):
        return reply(request_id, error=McpError(-32602, "params must be an object")), None
    service = request.app[SERVICE]
    try:
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in VERSIONS else VERSIONS[0]
            opened = await sessions.open(grant, version, service)
            return reply(request_id, {"protocolVersion": version, "capabilities": CAPABILITIES,
                                       "serverInfo": SERVER_INFO, "instructions": INSTRUCTIONS}), opened
        if session is None:
            raise McpError(-32600, "initialize first")
        if method in ("resources/subscribe", "resources/unsubscribe"):
            context_id = context_of(params.get("uri"))
            if method == "resources/subscribe":
                await service.get_context(context_id, include_lineage=False,
                                          namespace=grant.namespace if grant else None)
                await sessions.subscribe(session, context_id, service)
            else:
                await sessions.unsubscribe(session, context_id, service)
            return reply(request_id, {}), None
        return reply(request_id, await handle(service, grant, method, params)), None
    except McpError as exc:
        return reply(request_id, error=exc), None
    except CxdbError as exc:
        return reply(request_id, error=as_mcp_error(exc)), None


@routes.post("/mcp")
async def post(request: web.Request) -> web.StreamResponse:
    sessions = request.app[MCP_SESSIONS]
    grant = request.get(GRANT)
    body = await read_json(request)
    if SESSION_HEADER not in request.headers and isinstance(body, dict) and body.get("method") != "initialize":
        return await serve_modern(request, body, grant, sessions)  # 2026-07-28: one request, no session
    messages = body if isinstance(body, list) else [body]
    if not messages:
        raise BadRequest("an empty batch", {})
    initializing = any(isinstance(m, dict) and m.get("method") == "initialize" for m in messages)
    session = None if initializing else await sessions.find(request.headers.get(SESSION_HEADER), grant,
                                                            request.app[SERVICE])
    _version(request, session)
    if isinstance(body, list) and (session is not None and session.version != "2025-03-26" or initializing):
        raise BadRequest("JSON-RPC batches are only part of protocol revision 2025-03-26", {})
    replies = []
    opened: Session | None = None
    for message in messages:
        reply, made = await _one(request, message, sessions, session, grant)
        opened = opened or made
        if reply is not None:
            replies.append(reply)
    headers = {SESSION_HEADER: opened.id} if opened is not None else {}
    if not replies:
        return web.Response(status=202, headers=headers)
    payload = replies if isinstance(body, list) else replies[0]
    return web.Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)


@routes.get("/mcp")
async def stream(request: web.Request) -> web.StreamResponse:
    sessions = request.app[MCP_SESSIONS]
    service = request.app[SERVICE]
    session = await sessions.find(request.headers.get(SESSION_HEADER), request.get(GRANT), service)
    _version(request, session)
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise BadRequest("GET /mcp is the session's stream of server messages: Accept: text/event-stream", {})
    streams = request.app[STREAMS]
    heartbeat = request.app[SETTINGS].event_heartbeat

    async def produce(sink: Sink) -> None:
        await updates(sink, session, lambda: not streams.closing.is_set() and sessions.alive(session), heartbeat,
                      refresh=lambda: sessions.refresh(session, service))

    return await serve_stream(request, produce)


@routes.delete("/mcp")
async def end(request: web.Request) -> web.Response:
    sessions = request.app[MCP_SESSIONS]
    service = request.app[SERVICE]
    await sessions.close(await sessions.find(request.headers.get(SESSION_HEADER), request.get(GRANT), service),
                         service)
    return web.Response(status=204)
