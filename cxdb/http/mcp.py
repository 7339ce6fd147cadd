"""``/mcp``: the Model Context Protocol over its Streamable HTTP transport, in aiohttp.

The official ``mcp`` SDK serves only as a Starlette app; rather than run a second web framework
beside this one, the transport is implemented here on the protocol's specification, for the
handshake revisions the SDK negotiates (:data:`VERSIONS`), and proven with the SDK's own client in
the tests. docs/mcp.md says more.

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

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest, CxdbError, NotFound
from ..service import Service
from ..service.tokens import Grant
from .access import GRANT
from .keys import SERVICE, SETTINGS
from .mcp_tools import CAPABILITIES, INSTRUCTIONS, SERVER_INFO, McpError, context_of, context_uri, handle
from .params import read_json
from .streams import STREAMS, Sink, serve_stream

__all__ = ["MCP_SESSIONS", "McpSessions", "routes"]

log = logging.getLogger("cxdb.mcp")
routes = web.RouteTableDef()
VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
"""The protocol revisions served, newest first."""
MAX_SESSIONS = 10_000
MAX_SUBSCRIPTIONS = 256
IDLE_SECONDS = 3600.0
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"


class Session:
    __slots__ = ("id", "token_id", "version", "subscriptions", "pending", "wake", "used", "sequence")

    def __init__(self, token_id: str | None, version: str) -> None:
        self.id = secrets.token_urlsafe(24)
        self.token_id = token_id
        self.version = version
        self.subscriptions: set[int] = set()
        self.pending: set[int] = set()
        self.wake = asyncio.Event()
        self.used = time.monotonic()
        self.sequence = 0


class McpSessions:
    """The sessions of one process, their subscriptions, and the one watcher of the store's changes
    that tells subscribed sessions about new turns."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._by_context: dict[int, set[Session]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, grant: Grant | None, version: str) -> Session:
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            self._drop(next(iter(self._sessions.values())))
        session = Session(grant.token_id if grant else None, version)
        self._sessions[session.id] = session
        return session

    def find(self, session_id: str | None, grant: Grant | None) -> Session:
        if not session_id:
            raise BadRequest(f"this request needs the {SESSION_HEADER} header that initialize answered", {})
        session = self._sessions.get(session_id)
        if session is None or session.token_id != (grant.token_id if grant else None) \
                or time.monotonic() - session.used > IDLE_SECONDS:
            if session is not None:
                self._drop(session)
            raise NotFound("no such MCP session: initialize again", {})
        session.used = time.monotonic()
        self._sessions.move_to_end(session_id)
        return session

    def alive(self, session: Session) -> bool:
        """Whether the session is still open (its stream keeps it from expiring)."""
        if self._sessions.get(session.id) is not session:
            return False
        session.used = time.monotonic()
        return True

    def close(self, session: Session) -> None:
        self._drop(session)

    def _drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        for context_id in session.subscriptions:
            watchers = self._by_context.get(context_id)
            if watchers is not None:
                watchers.discard(session)
                if not watchers:
                    del self._by_context[context_id]
        session.subscriptions.clear()
        session.wake.set()  # its stream, if any, ends

    def _expire(self) -> None:
        now = time.monotonic()
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.used <= IDLE_SECONDS:
                return
            self._drop(oldest)

    def subscribe(self, session: Session, context_id: int, service: Service) -> None:
        if context_id not in session.subscriptions and len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise McpError(-32602, f"a session subscribes to at most {MAX_SUBSCRIPTIONS} resources")
        session.subscriptions.add(context_id)
        self._by_context.setdefault(context_id, set()).add(session)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(service))

    def unsubscribe(self, session: Session, context_id: int) -> None:
        session.subscriptions.discard(context_id)
        watchers = self._by_context.get(context_id)
        if watchers is not None:
            watchers.discard(session)
            if not watchers:
                del self._by_context[context_id]

    async def _watch(self, service: Service) -> None:
        """While anyone subscribes: read the store's changes once for every session."""
        changes = service.changes
        _, position = await service.event_bounds()
        while self._by_context:
            try:
                batch, position, more = await changes.read(position, 256, frozenset(self._by_context))
                for item in batch:
                    if item.kind == "turn_appended" and item.context_id is not None:
                        for session in self._by_context.get(item.context_id, ()):
                            session.pending.add(item.context_id)
                            session.wake.set()
                if not more:
                    await changes.wait(position, 5.0)
            except CxdbError as exc:  # the store is closing or out of reach: try again shortly
                log.warning("MCP subscriptions: %s", exc.message)
                await asyncio.sleep(1.0)

    async def close_all(self, app: web.Application) -> None:
        for session in list(self._sessions.values()):
            self._drop(session)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)


MCP_SESSIONS = web.AppKey("mcp_sessions", McpSessions)


def _reply(request_id: Any, result: Any = None, error: McpError | None = None) -> dict[str, Any]:
    if error is not None:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        return {"jsonrpc": "2.0", "id": request_id, "error": body}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _version(request: web.Request, session: Session | None) -> None:
    asked = request.headers.get(VERSION_HEADER)
    if asked is not None and asked not in VERSIONS:
        raise BadRequest(f"{VERSION_HEADER} {asked!r} is not served: {', '.join(VERSIONS)}",
                         {"supported": list(VERSIONS)})


async def _one(request: web.Request, message: Any, sessions: McpSessions, session: Session | None,
               grant: Grant | None) -> tuple[dict[str, Any] | None, Session | None]:
    """The reply to one message (None for a notification or a response), and the session it opened."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"),
                                                                                            str):
        if isinstance(message, dict) and ("result" in message or "error" in message):
            return None, None  # a response to a request of ours: none is ever sent
        return _reply(message.get("id") if isinstance(message, dict) else None,
                      error=McpError(-32600, "not a JSON-RPC 2.0 request")), None
    method = message["method"]
    request_id = message.get("id")
    params = message.get("params") or {}
    if "id" not in message:
        return None, None  # notifications (initialized, cancelled) need no answer
    if not isinstance(params, dict):
        return _reply(request_id, error=McpError(-32602, "params must be an object")), None
    service = request.app[SERVICE]
    try:
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in VERSIONS else VERSIONS[0]
            opened = sessions.open(grant, version)
            return _reply(request_id, {"protocolVersion": version, "capabilities": CAPABILITIES,
                                       "serverInfo": SERVER_INFO, "instructions": INSTRUCTIONS}), opened
        if session is None:
            raise McpError(-32600, "initialize first")
        if method in ("resources/subscribe", "resources/unsubscribe"):
            context_id = context_of(params.get("uri"))
            if method == "resources/subscribe":
                await service.get_context(context_id, include_lineage=False,
                                          namespace=grant.namespace if grant else None)
                sessions.subscribe(session, context_id, service)
            else:
                sessions.unsubscribe(session, context_id)
            return _reply(request_id, {}), None
        return _reply(request_id, await handle(service, grant, method, params)), None
    except McpError as exc:
        return _reply(request_id, error=exc), None
    except CxdbError as exc:
        code = -32002 if exc.code == "NOT_FOUND" else -32602 if exc.code in ("UNPROCESSABLE_ENTITY",
                                                                             "BAD_REQUEST") else -32603
        message_text = exc.message if exc.code != "INTERNAL_ERROR" else "Internal server error"
        return _reply(request_id, error=McpError(code, message_text, {"code": exc.code})), None


@routes.post("/mcp")
async def post(request: web.Request) -> web.StreamResponse:
    sessions = request.app[MCP_SESSIONS]
    grant = request.get(GRANT)
    body = await read_json(request)
    messages = body if isinstance(body, list) else [body]
    if not messages:
        raise BadRequest("an empty batch", {})
    initializing = any(isinstance(m, dict) and m.get("method") == "initialize" for m in messages)
    session = None if initializing else sessions.find(request.headers.get(SESSION_HEADER), grant)
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
    session = sessions.find(request.headers.get(SESSION_HEADER), request.get(GRANT))
    _version(request, session)
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise BadRequest("GET /mcp is the session's stream of server messages: Accept: text/event-stream", {})
    streams = request.app[STREAMS]
    heartbeat = request.app[SETTINGS].event_heartbeat

    async def produce(sink: Sink) -> None:
        while not streams.closing.is_set() and sessions.alive(session):
            try:
                await asyncio.wait_for(session.wake.wait(), heartbeat)
            except TimeoutError:
                await sink.idle()
                continue
            session.wake.clear()
            updated, session.pending = session.pending, set()
            messages = []
            for context_id in sorted(updated):
                session.sequence += 1
                note = {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                        "params": {"uri": context_uri(context_id)}}
                messages.append(("message", session.sequence, orjson.dumps(note)))
            await sink.send(messages)

    return await serve_stream(request, produce)


@routes.delete("/mcp")
async def end(request: web.Request) -> web.Response:
    sessions = request.app[MCP_SESSIONS]
    sessions.close(sessions.find(request.headers.get(SESSION_HEADER), request.get(GRANT)))
    return web.Response(status=204)
