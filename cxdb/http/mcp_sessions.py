"""MCP sessions and subscriptions, per server process: the sessions of the handshake revisions, the
listen streams of 2026-07-28, and the one watcher of the store's changes that wakes the subscribers
of a context when a turn is appended to it (by anyone, through any server: it reads the durable
event log)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson
from aiohttp import web

from ..errors import BadRequest, CxdbError, NotFound
from ..service import Service
from ..service.tokens import Grant
from .mcp_tools import McpError, context_uri
from .streams import Sink

__all__ = ["IDLE_SECONDS", "MAX_SESSIONS", "MAX_SUBSCRIPTIONS", "MCP_SESSIONS", "SESSION_HEADER", "McpSessions",
           "Session", "updates"]

log = logging.getLogger("cxdb.mcp")
MAX_SESSIONS = 10_000
MAX_SUBSCRIPTIONS = 256
IDLE_SECONDS = 3600.0
SESSION_HEADER = "Mcp-Session-Id"


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
        self._starting = asyncio.Lock()

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

    async def subscribe(self, session: Session, context_id: int, service: Service) -> None:
        """Subscribe; every turn appended to the context after this returns wakes the session."""
        if context_id not in session.subscriptions and len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise McpError(-32602, f"a session subscribes to at most {MAX_SUBSCRIPTIONS} resources")
        session.subscriptions.add(context_id)
        self._by_context.setdefault(context_id, set()).add(session)
        async with self._starting:
            if self._watcher is None or self._watcher.done():
                _, position = await service.event_bounds()  # before this returns: no later turn is missed
                self._watcher = asyncio.get_running_loop().create_task(self._watch(service, position))

    def unsubscribe(self, session: Session, context_id: int) -> None:
        session.subscriptions.discard(context_id)
        watchers = self._by_context.get(context_id)
        if watchers is not None:
            watchers.discard(session)
            if not watchers:
                del self._by_context[context_id]

    async def _watch(self, service: Service, position: int) -> None:
        """While anyone subscribes: read the store's changes once for every session. Every change is
        read and matched against the subscriptions of the moment, so one made just now is never missed."""
        changes = service.changes
        while self._by_context:
            try:
                batch, position, more = await changes.read(position, 256)
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


async def updates(sink: Sink, session: Session, alive: Callable[[], bool], heartbeat: float,
                  meta: dict[str, object] | None = None) -> None:
    """Send ``notifications/resources/updated`` for each subscribed context a turn was appended to,
    heartbeats between, while ``alive()``."""
    while alive():
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
            params: dict[str, object] = {"uri": context_uri(context_id)}
            if meta is not None:
                params["_meta"] = meta
            note = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": params}
            messages.append(("message", session.sequence, orjson.dumps(note)))
        await sink.send(messages)
