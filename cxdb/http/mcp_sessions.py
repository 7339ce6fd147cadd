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
from collections.abc import Awaitable, Callable

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
RECORD = "mcp:"
TOUCH_SECONDS = 300.0
REFRESH_SECONDS = 1.0
SWEEP_EVERY = 64
SWEEP_BATCH = 1000


class Session:
    __slots__ = ("id", "token_id", "version", "subscriptions", "since", "pending", "wake", "used", "saved",
                 "sequence", "refreshed")

    def __init__(self, token_id: str | None, version: str, session_id: str | None = None) -> None:
        self.id = session_id or secrets.token_urlsafe(24)
        self.token_id = token_id
        self.version = version
        self.subscriptions: set[int] = set()
        self.since: dict[int, int] = {}
        """Each subscription's position in the event log when it was made: what it is owed from."""
        self.pending: set[int] = set()
        self.wake = asyncio.Event()
        self.used = time.monotonic()
        self.saved = time.time()
        self.sequence = 0
        self.refreshed = 0.0

    def record(self) -> bytes:
        return orjson.dumps({"t": self.token_id, "v": self.version, "u": int(time.time() * 1000),
                             "s": {str(context_id): since for context_id, since in self.since.items()}})


class McpSessions:
    """The sessions of this process, their subscriptions, and the one watcher of the store's changes
    that tells subscribed sessions about new turns.

    A handshake session is also kept in the store (an access record ``mcp:<id>``: its token, revision
    and subscriptions), so every process of the store serves it: one that has not seen it loads it,
    and it re-reads the record at most once a second (on a request, or from its stream), taking up
    subscriptions made through another process from the event-log position each was made at, so none
    of their updates is lost, and ending within a second when another process ended it.
    """

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._by_context: dict[int, set[Session]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._opened = 0

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(self, grant: Grant | None, version: str, service: Service) -> Session:
        session = Session(grant.token_id if grant else None, version)
        await service.save_access_record(RECORD + session.id, session.record())
        self._keep(session)
        self._opened += 1
        if self._opened % SWEEP_EVERY == 1:
            await self._sweep(service)
        return session

    def _keep(self, session: Session) -> None:
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:  # forgotten here, not ended: it is in the store
            self._forget(next(iter(self._sessions.values())))
        self._sessions[session.id] = session

    async def find(self, session_id: str | None, grant: Grant | None, service: Service) -> Session:
        if not session_id:
            raise BadRequest(f"this request needs the {SESSION_HEADER} header that initialize answered", {})
        session = self._sessions.get(session_id)
        if session is None and len(session_id) <= 64:
            session = await self._load(session_id, service)
        if session is None or session.token_id != (grant.token_id if grant else None) \
                or time.monotonic() - session.used > IDLE_SECONDS:
            if session is not None and session.token_id == (grant.token_id if grant else None):
                await self.close(session, service)
            raise NotFound("no such MCP session: initialize again", {})
        if not await self.refresh(session, service):  # ended through another process
            raise NotFound("no such MCP session: initialize again", {})
        session.used = time.monotonic()
        self._sessions.move_to_end(session_id)
        if time.time() - session.saved > TOUCH_SECONDS:  # the sweep goes by this
            session.saved = time.time()
            await service.save_access_record(RECORD + session.id, session.record())
        return session

    async def _load(self, session_id: str, service: Service) -> Session | None:
        raw = await service.access_record(RECORD + session_id)
        if raw is None:
            return None
        value = orjson.loads(raw)
        if time.time() * 1000 - value["u"] > IDLE_SECONDS * 1000:
            await service.delete_access_record(RECORD + session_id)
            return None
        session = Session(value["t"], value["v"], session_id)
        session.refreshed = time.monotonic()
        self._keep(session)
        await self._adopt(session, {int(k): v for k, v in value["s"].items()}, service)
        return session

    async def refresh(self, session: Session, service: Service, now: bool = False) -> bool:
        """Take up what another process changed in the session's subscriptions (at most once a second,
        unless ``now``); False once it ended."""
        if not now and time.monotonic() - session.refreshed < REFRESH_SECONDS:
            return True
        session.refreshed = time.monotonic()
        raw = await service.access_record(RECORD + session.id)
        if raw is None:
            self._forget(session)
            return False
        await self._adopt(session, {int(k): v for k, v in orjson.loads(raw)["s"].items()}, service)
        return True

    async def _adopt(self, session: Session, wanted: dict[int, int], service: Service) -> None:
        for context_id in session.subscriptions - wanted.keys():
            self._unregister(session, context_id)
        for context_id, since in wanted.items():
            if context_id in session.subscriptions:
                continue
            await self._register(session, context_id, since, service)
            if await _appended_since(service, context_id, since):
                session.pending.add(context_id)
                session.wake.set()

    def alive(self, session: Session) -> bool:
        """Whether the session is still open here (its stream keeps it from expiring)."""
        if self._sessions.get(session.id) is not session:
            return False
        session.used = time.monotonic()
        return True

    async def close(self, session: Session, service: Service) -> None:
        self._forget(session)
        await service.delete_access_record(RECORD + session.id)

    def release(self, session: Session) -> None:
        """End a session this process alone knows (a 2026-07-28 listen stream's)."""
        self._forget(session)

    def _forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        for context_id in list(session.subscriptions):
            self._unregister(session, context_id)
        session.wake.set()  # its stream, if any, ends

    def _expire(self) -> None:
        now = time.monotonic()
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.used <= IDLE_SECONDS:
                return
            self._forget(oldest)

    async def _sweep(self, service: Service) -> None:
        """End, in the store, sessions no process has used for :data:`IDLE_SECONDS` (a bounded pass)."""
        cutoff = time.time() * 1000 - IDLE_SECONDS * 1000
        for name, raw in await service.access_records(RECORD, SWEEP_BATCH):
            if orjson.loads(raw)["u"] < cutoff:
                await service.delete_access_record(name)

    async def subscribe(self, session: Session, context_id: int, service: Service, keep: bool = True) -> None:
        """Subscribe; every turn appended to the context after this returns wakes the session. With
        ``keep``, the subscription is kept in the session's record for the other processes."""
        if context_id not in session.subscriptions and len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise McpError(-32602, f"a session subscribes to at most {MAX_SUBSCRIPTIONS} resources")
        # What other processes subscribed it to lately, so that the record written below keeps it.
        if keep and not await self.refresh(session, service, now=True):
            raise NotFound("no such MCP session: initialize again", {})
        if context_id in session.subscriptions:
            return
        _, since = await service.event_bounds()
        await self._register(session, context_id, since, service)
        if keep:
            await service.save_access_record(RECORD + session.id, session.record())

    async def unsubscribe(self, session: Session, context_id: int, service: Service) -> None:
        if not await self.refresh(session, service, now=True):
            raise NotFound("no such MCP session: initialize again", {})
        self._unregister(session, context_id)
        await service.save_access_record(RECORD + session.id, session.record())

    async def _register(self, session: Session, context_id: int, since: int, service: Service) -> None:
        session.subscriptions.add(context_id)
        session.since[context_id] = since
        self._by_context.setdefault(context_id, set()).add(session)
        async with self._starting:
            if self._watcher is None or self._watcher.done():
                _, position = await service.event_bounds()  # before this returns: no later turn is missed
                self._watcher = asyncio.get_running_loop().create_task(self._watch(service, position))

    def _unregister(self, session: Session, context_id: int) -> None:
        session.subscriptions.discard(context_id)
        session.since.pop(context_id, None)
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
            self._forget(session)  # ended here only: other processes serve them on
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)


MCP_SESSIONS = web.AppKey("mcp_sessions", McpSessions)


async def updates(sink: Sink, session: Session, alive: Callable[[], bool], heartbeat: float,
                  meta: dict[str, object] | None = None,
                  refresh: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Send ``notifications/resources/updated`` for each subscribed context a turn was appended to,
    heartbeats between, while ``alive()`` (and ``refresh()``, when given, every second or so)."""
    quiet = 0.0
    while alive():
        step = min(heartbeat, REFRESH_SECONDS) if refresh is not None else heartbeat
        try:
            await asyncio.wait_for(session.wake.wait(), step)
        except TimeoutError:
            quiet += step
            if refresh is not None and not await refresh():
                return
            if quiet >= heartbeat:
                quiet = 0.0
                await sink.idle()
            continue
        quiet = 0.0
        if refresh is not None and not await refresh():
            return
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


async def _appended_since(service: Service, context_id: int, since: int) -> bool:
    """Whether a turn was appended to the context after event-log position ``since``."""
    position = since
    while True:
        batch, position, more = await service.changes.read(position, 256, frozenset({context_id}))
        if any(item.kind == "turn_appended" for item in batch):
            return True
        if not more:
            return False
