"""Events as the API shows them, the watch that wakes streams when the log grows, and the pruner.

Streams read the durable log from their own positions (:meth:`cxdb.storage.base.Backend.events`),
so a slow one falls behind without holding anything for it. :class:`Changes` only tells them when to
read again: one poll of the log's newest sequence per process, every :data:`POLL_SECONDS` while any
stream waits, plus an immediate wake after a write of this process. A write of another worker or
gateway is therefore seen within one poll; correctness never depends on the wake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..model import iso_utc
from ..storage import Backend, Event

__all__ = ["EVENT_KINDS", "POLL_SECONDS", "Changes", "Pruner", "event_data", "event_context"]

log = logging.getLogger("cxdb.service")
EVENT_KINDS = ("context_created", "turn_appended", "registry_published")
POLL_SECONDS = 0.02
PRUNE_STEP = 1000
"""Events one pruning transaction deletes at most: appends wait for no longer."""


def event_context(event: Event) -> int | None:
    """The context an event is about; None for a registry event."""
    if event.context is not None:
        return event.context.context_id
    if event.turn is not None:
        return event.turn.context_id
    return None


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
    return {}


class Changes:
    """Wakes the streams of this process when the event log has grown.

    One poller per process reads the log's newest sequence every :data:`POLL_SECONDS` while a stream
    waits, and at once after :meth:`poke`; when it has grown, every waiting stream wakes and reads.
    """

    def __init__(self, store: Backend) -> None:
        self._store = store
        self._newest = 0
        self._grew = asyncio.Event()
        self._kick = asyncio.Event()
        self._waiting = 0
        self._poller: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """A write of this process committed: look now rather than at the next poll."""
        self._kick.set()

    async def wait(self, position: int, timeout: float) -> bool:
        """Until the log holds events after ``position``, or ``timeout``; False on timeout."""
        if self._newest > position:
            return True
        self._waiting += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            deadline = time.monotonic() + timeout
            while self._newest <= position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._grew.wait(), left)
                except TimeoutError:
                    return False
            return True
        finally:
            self._waiting -= 1

    async def _poll(self) -> None:
        while self._waiting:
            try:
                _, newest = await self._store.event_bounds()
            except Exception:  # the store is out of reach: the streams keep waiting, the poll goes on
                log.debug("event poll failed", exc_info=True)
                newest = self._newest
            if newest > self._newest:
                self._newest = newest
                woken, self._grew = self._grew, asyncio.Event()
                woken.set()
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), POLL_SECONDS)
            except TimeoutError:
                pass

    def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()


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
