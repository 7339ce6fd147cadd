"""Events as the API shows them, the watch that wakes streams when the log grows, and the pruner.

Streams read the durable log from their own positions (:meth:`cxdb.storage.base.Backend.events`),
so a slow one falls behind without holding anything for it. :class:`Changes` only tells them when to
read again: one poll of the log's newest sequence per process, every :data:`POLL_SECONDS` while any
stream waits, plus an immediate wake after a write of this process, and after another process's
where the store signals it (PostgreSQL's LISTEN/NOTIFY; the poll then slows to a fallback of
:data:`SIGNALLED_POLL_SECONDS`). A write of another worker or gateway is therefore seen within one
poll at worst; correctness never depends on the wake.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..model import iso_utc
from ..storage import Backend, Event
from ..storage.base import EVENT_KINDS

__all__ = ["EVENT_KINDS", "POLL_SECONDS", "Changes", "FeedItem", "Pruner", "event_context", "event_data", "feed_item"]

log = logging.getLogger("cxdb.service")
POLL_SECONDS = 0.02
SIGNALLED_POLL_SECONDS = 0.25
"""The poll when the store signals other processes' commits (PostgreSQL's NOTIFY): only a fallback."""
MIN_GAP_SECONDS = 0.02
"""Polls are at least this far apart, so a burst of writes is read as one batch."""
MAX_GAP_SECONDS = 0.25
LOAD_FACTOR = 8
"""A poll waits at least this many times the loop's CPU time that the streams it woke took to send
(up to :data:`MAX_GAP_SECONDS`): under load, streams take a bounded share of the loop and send in
bigger batches, so appends keep their pace; at a light load the gap is :data:`MIN_GAP_SECONDS`."""
LINGER_SECONDS = 5.0
RING_BYTES = 4 * 1024 * 1024
"""The rendered recent events one process keeps for its streams, in bytes."""
ITEM_OVERHEAD = 200
"""What one ring entry costs beyond its JSON, roughly: the object and its deque slot."""
FILL_BATCH = 1024
PRUNE_STEP = 1000
"""Events one pruning transaction deletes at most: appends wait for no longer."""


def event_context(event: Event) -> int | None:
    """The context an event is about; None for a registry event."""
    if event.context is not None:
        return event.context.context_id
    if event.turn is not None:
        return event.turn.context_id
    return event.context_id or None


def event_data(event: Event) -> dict[str, Any]:
    """The ``data`` of an event: CXDB's fields, ids as decimal strings."""
    if event.kind == "turn_appended" and event.turn is not None:
        turn = event.turn
        return {"context_id": str(turn.context_id), "turn_id": str(turn.turn_id),
                "parent_turn_id": str(turn.parent_turn_id), "depth": turn.depth, "type_id": turn.type_id,
                "type_version": turn.type_version, "content_hash": turn.content_hash.hex()}
    if event.kind == "context_created" and event.context is not None:
        context = event.context
        data: dict[str, Any] = {"context_id": str(context.context_id), "head_turn_id": str(event.head_turn_id),
                                "head_depth": event.head_depth}
        if context.lineage.parent_context_id is not None:
            data["parent_context_id"] = str(context.lineage.parent_context_id)
        if context.client_tag is not None:
            data["client_tag"] = context.client_tag
        data["created_at"] = iso_utc(context.created_at_ms)
        return data
    if event.kind == "registry_published" and event.bundle_id is not None:
        return {"bundle_id": event.bundle_id}
    if event.kind == "context_deleted":
        return {"context_id": str(event.context_id), "head_turn_id": str(event.head_turn_id),
                "head_depth": event.head_depth}
    return {}


@dataclass(frozen=True, slots=True)
class FeedItem:
    """An event as streams send it: its ``data`` rendered to JSON once, for every stream."""

    sequence: int
    kind: str
    context_id: int | None
    data: bytes


def feed_item(event: Event) -> FeedItem:
    return FeedItem(event.sequence, event.kind, event_context(event), orjson.dumps(event_data(event)))


class Changes:
    """The newest events of this process's store, read once for every stream, and the wake-up.

    One poller per process, running while any stream waits, reads the log's newest sequence every
    :data:`POLL_SECONDS`, and at once after :meth:`poke` (at most every :data:`MIN_GAP_SECONDS`, so a
    burst of writes is read as one batch). New events are read once, rendered once, and kept in a
    ring bounded in bytes; a stream whose position the ring covers sends from it, and one that fell
    further behind reads the store itself. Either way each stream keeps its own position.
    """

    def __init__(self, store: Backend, ring_bytes: int = RING_BYTES) -> None:
        self._store = store
        self._ring_bytes = ring_bytes
        self._ring: deque[FeedItem] = deque()
        self._by_context: dict[int, deque[FeedItem]] = {}
        self._held = 0
        self._newest = 0
        self._read_to: int | None = None
        self._grew = asyncio.Event()
        self._kick = asyncio.Event()
        self._waiting = 0
        self._interrupted = False
        self._poller: asyncio.Task[None] | None = None
        self._poll_seconds = POLL_SECONDS

    def watch(self) -> None:
        """Once the store is started: have it wake the poll for other processes' commits, if it can;
        the poll then only falls back."""
        if self._store.watch(self.poke):
            self._poll_seconds = SIGNALLED_POLL_SECONDS

    def poke(self) -> None:
        """A write of this process committed: look now rather than at the next poll."""
        self._kick.set()

    def after(self, position: int, contexts: frozenset[int] | None = None) -> tuple[list[FeedItem], int] | None:
        """The ring's events after ``position`` (of ``contexts`` only, when given), oldest first, and
        the sequence up to which the ring was looked at; None when the ring does not reach back that
        far (the caller reads the store). With ``contexts``, only those contexts' entries are visited,
        so a stream that follows a few contexts costs nothing for the others' events."""
        ring = self._ring
        if not ring or position < ring[0].sequence - 1:
            return None
        newest = ring[-1].sequence
        if contexts is not None:
            found: list[FeedItem] = []
            for context_id in contexts:
                entries = self._by_context.get(context_id)
                if entries:
                    found.extend(_newer(entries, position))
            found.sort(key=_sequence)
            return found, newest
        start = position + 1 - ring[0].sequence
        if start < len(ring) and ring[start].sequence != position + 1:  # not consecutive: find it
            return [item for item in ring if item.sequence > position], newest
        return list(itertools.islice(ring, max(0, start), None)), newest

    async def read(self, position: int, limit: int,
                   contexts: frozenset[int] | None = None) -> tuple[list[FeedItem], int, bool]:
        """Events after ``position`` (those of ``contexts``, when given), the sequence read up to, and
        whether more may follow at once: from the ring when it has them, else up to ``limit`` from
        the store."""
        found = self.after(position, contexts)
        if found is not None:
            return found[0], max(position, found[1]), False
        events = await self._store.events(position, limit)
        items = [feed_item(event) for event in events]
        if contexts is not None:
            items = [item for item in items if item.context_id in contexts]
        return items, events[-1].sequence if events else position, len(events) == limit

    async def wait(self, position: int, timeout: float) -> bool:
        """Until the log holds events after ``position`` (True), or ``timeout`` or :meth:`interrupt`
        (False). Waiting creates no task: a thousand streams waking cost a thousand resumptions."""
        if self._newest > position:
            return True
        self._waiting += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            async with asyncio.timeout(timeout):
                while self._newest <= position and not self._interrupted:
                    await self._grew.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        return not self._interrupted

    def interrupt(self) -> None:
        """Make every wait return False, now and from now on (the server is shutting down)."""
        self._interrupted = True
        self._wake()

    def _wake(self) -> None:
        woken, self._grew = self._grew, asyncio.Event()
        woken.set()

    async def _poll(self) -> None:
        # The ring restarts with each poller: while no stream waited, nobody read it. A poller outlives
        # the last wait by LINGER_SECONDS, so streams busy sending at the same moment do not restart it.
        self._ring.clear()
        self._by_context.clear()
        self._held = 0
        self._read_to = None
        idle_since: float | None = None
        while True:
            polled = time.monotonic()
            if self._waiting:
                idle_since = None
            elif idle_since is None:
                idle_since = polled
            elif polled - idle_since > LINGER_SECONDS:
                return
            self._kick.clear()  # before reading: a commit signalled from here on is read next time
            try:
                _, newest = await self._store.event_bounds()
                if newest > self._newest:
                    await self._fill(newest)
            except Exception:  # the store is out of reach: the streams keep waiting, the poll goes on
                log.debug("event poll failed", exc_info=True)
                newest = self._newest
            busy = 0.0
            if newest > self._newest:
                self._newest = newest
                self._wake()
                started = time.thread_time()  # this thread's CPU: waiting on others is not counted
                await asyncio.sleep(0)  # the woken streams send (with whatever else is ready)
                busy = time.thread_time() - started
            try:
                await asyncio.wait_for(self._kick.wait(), self._poll_seconds)
            except TimeoutError:
                pass
            gap = min(MAX_GAP_SECONDS, max(MIN_GAP_SECONDS, LOAD_FACTOR * busy)) - (time.monotonic() - polled)
            if gap > 0:
                await asyncio.sleep(gap)

    async def _fill(self, newest: int) -> None:
        if self._read_to is None:  # the ring starts with what is new from now on
            self._read_to = newest
            return
        while self._read_to < newest:
            events = await self._store.events(self._read_to, FILL_BATCH)
            if not events:
                break
            for event in events:
                item = feed_item(event)
                self._ring.append(item)
                if item.context_id is not None:
                    self._by_context.setdefault(item.context_id, deque()).append(item)
                self._held += len(item.data) + ITEM_OVERHEAD
            self._read_to = events[-1].sequence
            while self._held > self._ring_bytes and len(self._ring) > 1:
                dropped = self._ring.popleft()  # the oldest of the ring is the oldest of its context too
                self._held -= len(dropped.data) + ITEM_OVERHEAD
                if dropped.context_id is not None:
                    entries = self._by_context[dropped.context_id]
                    entries.popleft()
                    if not entries:
                        del self._by_context[dropped.context_id]

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()


def _sequence(item: FeedItem) -> int:
    return item.sequence


def _newer(entries: deque[FeedItem], position: int) -> list[FeedItem]:
    """The entries after ``position``, walking back from the newest: O(what is returned)."""
    found = []
    for item in reversed(entries):
        if item.sequence <= position:
            break
        found.append(item)
    found.reverse()
    return found


class Pruner:
    """Deletes events older than the retention window, in steps, every ``interval`` seconds."""

    def __init__(self, store: Backend, retention: float, clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._sleep = sleep
        self.interval = min(60.0, max(0.05, retention / 4))

    async def run(self) -> None:
        while True:
            await self._sleep(self.interval)
            try:
                await self.once()
            except Exception:  # a closed or unreachable store: try again next time
                log.debug("event pruning failed", exc_info=True)

    async def once(self) -> int:
        """One pruning pass; how many events went."""
        cutoff = int((self._clock() - self._retention) * 1000)
        pruned = 0
        while True:
            step = await self._store.prune_events(cutoff, PRUNE_STEP)
            pruned += step
            if step < PRUNE_STEP:
                return pruned
