"""MCP revision 2026-07-28: each request stands alone (no ``initialize``, no session).

A request carries its revision and the client's capabilities in ``params._meta``, and repeats the
revision and the method (and, for a tool call or a resource read, its name) in the
``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers; a request that disagrees with
itself is refused before anything runs (``-32020``), one of another revision names those served
(``-32022``). ``server/discover`` says what is served. Subscriptions are a ``subscriptions/listen``
request whose answer is a stream: an acknowledgment naming the resources honored, then
``notifications/resources/updated`` for each, every frame stamped with the request's id; the stream
ends with the request's result when the server shuts down. Everything else is answered as in the
handshake revisions, by the same tools and resources.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from ..errors import CxdbError, NotFound
from ..service.tokens import Grant
from .keys import SERVICE, SETTINGS
from .mcp_sessions import MAX_SUBSCRIPTIONS, McpSessions, Session, updates
from .mcp_tools import CAPABILITIES, INSTRUCTIONS, SERVER_INFO, McpError, as_mcp_error, context_of, handle, reply
from .streams import STREAMS, Sink, serve_stream

__all__ = ["MODERN", "serve_modern"]

MODERN = "2026-07-28"
HANDSHAKE = ("2025-11-25", "2025-06-18", "2025-03-26")
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_SERVER = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"
NAMED = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
HEADER_MISMATCH = -32020
UNSUPPORTED_VERSION = -32022
CACHE = {"server/discover": (300_000, "public"), "tools/list": (300_000, "public"),
         "resources/templates/list": (300_000, "public"), "resources/list": (0, "private"),
         "resources/read": (0, "private")}
"""This revision's caching directives of the cacheable results: what is the same for every caller may be
kept five minutes; contexts change at any time, and differ by token."""
STATUS = {-32700: 400, -32600: 400, -32602: 400, HEADER_MISMATCH: 400, UNSUPPORTED_VERSION: 400, -32601: 404}
"""The HTTP status of a JSON-RPC error on this revision's wire; others are 200."""


def _ladder(body: dict[str, Any], headers: Any) -> McpError | None:
    """Why the request's envelope is refused, or None."""
    params = body.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or META_VERSION not in meta or META_CAPABILITIES not in meta:
        return McpError(-32602, f"params._meta must carry {META_VERSION!r} and {META_CAPABILITIES!r} (revision "
                                f"{MODERN}), or initialize first (revisions {', '.join(HANDSHAKE)})")
    version = meta[META_VERSION]
    if headers.get("MCP-Protocol-Version") != version:
        return McpError(HEADER_MISMATCH, "MCP-Protocol-Version header does not match the request's protocol version")
    method = body["method"]
    if headers.get("Mcp-Method") != method:
        return McpError(HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
    name_key = NAMED.get(method)
    named = params.get(name_key) if name_key is not None and isinstance(params, dict) else None
    if named is not None and unquote(headers.get("Mcp-Name", "")) != named:
        return McpError(HEADER_MISMATCH, f"Mcp-Name header does not match the request's {name_key!r}")
    if version != MODERN:
        return McpError(UNSUPPORTED_VERSION, "Unsupported protocol version",
                        {"supported": [MODERN], "requested": version})
    return None


def _answer(message: dict[str, Any]) -> web.Response:
    error = message.get("error")
    status = STATUS.get(error["code"], 200) if error else 200
    return web.Response(status=status, body=orjson.dumps(message), content_type="application/json")


async def serve_modern(request: web.Request, body: dict[str, Any], grant: Grant | None,
                       sessions: McpSessions) -> web.StreamResponse:
    if body.get("jsonrpc") != "2.0" or not isinstance(body.get("method"), str):
        if "result" in body or "error" in body:
            return web.Response(status=202)
        return _answer(reply(body.get("id"), error=McpError(-32600, "not a JSON-RPC 2.0 request")))
    if "id" not in body:
        return web.Response(status=202)  # this revision defines no client notification to act on
    request_id = body["id"]
    refused = _ladder(body, request.headers)
    if refused is not None:
        return _answer(reply(request_id, error=refused))
    method = body["method"]
    params = {key: value for key, value in body["params"].items() if key != "_meta"}
    service = request.app[SERVICE]
    try:
        if method == "server/discover":
            result: dict[str, Any] = {"supportedVersions": [MODERN], "capabilities": CAPABILITIES,
                                      "instructions": INSTRUCTIONS, "_meta": {META_SERVER: SERVER_INFO}}
        elif method == "subscriptions/listen":
            return await _listen(request, request_id, params, grant, sessions)
        elif method in ("resources/subscribe", "resources/unsubscribe", "initialize"):
            raise McpError(-32601, f"{method} is not part of revision {MODERN}: use subscriptions/listen")
        else:
            result = await handle(service, grant, method, params)
    except McpError as exc:
        return _answer(reply(request_id, error=exc))
    except CxdbError as exc:
        return _answer(reply(request_id, error=as_mcp_error(exc)))
    if method in CACHE:
        ttl, scope = CACHE[method]
        result = {**result, "ttlMs": ttl, "cacheScope": scope}
    return _answer(reply(request_id, {**result, "resultType": "complete"}))


async def _listen(request: web.Request, request_id: Any, params: dict[str, Any], grant: Grant | None,
                  sessions: McpSessions) -> web.StreamResponse:
    wanted = params.get("notifications")
    uris = wanted.get("resourceSubscriptions") if isinstance(wanted, dict) else None
    if uris is None:
        uris = []
    if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris) or len(uris) > MAX_SUBSCRIPTIONS:
        raise McpError(-32602, f"notifications.resourceSubscriptions is a list of at most {MAX_SUBSCRIPTIONS} URIs")
    service = request.app[SERVICE]
    listener = Session(grant.token_id if grant else None, MODERN)
    honored = []
    for uri in dict.fromkeys(uris):
        context_id = context_of(uri)
        try:
            await service.get_context(context_id, include_lineage=False,
                                      namespace=grant.namespace if grant else None)
        except NotFound:
            continue  # not honored: the acknowledgment leaves it out
        await sessions.subscribe(listener, context_id, service, keep=False)
        honored.append(uri)
    streams = request.app[STREAMS]
    meta = {META_SUBSCRIPTION: request_id}
    ack = {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
           "params": {"notifications": {"resourceSubscriptions": honored} if honored else {}, "_meta": meta}}

    async def produce(sink: Sink) -> None:
        await sink.send([("message", 0, orjson.dumps(ack))])
        await updates(sink, listener, lambda: not streams.closing.is_set(), request.app[SETTINGS].event_heartbeat,
                      meta)
        done = reply(request_id, {"resultType": "complete", "_meta": meta})  # a graceful end: shutdown
        await sink.send([("message", listener.sequence + 1, orjson.dumps(done))])

    try:
        return await serve_stream(request, produce)
    finally:
        sessions.release(listener)
