"""The data lifecycle: deleting contexts, retention, expiry of head history and idempotency keys, and
the background work that reclaims what nothing reaches any more (docs/operations.md).

A deletion commits at once; reclaiming its turns and blobs is the store's bounded steps
(:meth:`~cxdb.storage.base.Backend.reclaim`), run here one after another, yielding to the event loop
between them, until none is left. Every process of a server runs this loop, as every process prunes
events: on LMDB their steps take turns at the write lock, on PostgreSQL they share the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Settings
from ..errors import Forbidden, NotFound
from ..model import ContextRecord
from ..storage import Backend
from ..storage.base import Reclaimed
from ..storage.rules import MAX_DELETE
from . import tenancy
from .events import Changes, Pruner

__all__ = ["RECLAIM_BUDGET", "Lifecycle"]

log = logging.getLogger("cxdb.lifecycle")

RECLAIM_BUDGET = 256
"""Records one reclamation step (one write transaction) touches at most, about: on LMDB a step holds
the one write lock for ~10 ms at this size (bench/churn.py), the time of a couple of append batches."""
EXPIRE_BUDGET = 1000
"""History entries, or idempotency keys, one expiry step deletes at most."""
RETAIN_PAGE = 64
"""Contexts one retention step looks at."""
RETAIN_PAGES_PER_PASS = 64
"""Pages one retention pass of the default rule walks at most; the next pass goes on from there."""
MAINTAIN_SECONDS = 60.0
"""How often expiry and retention run; reclamation also runs at once after a deletion."""


class Lifecycle:
    """Deletes contexts and keeps the store's lifecycle going; runs the event pruner too."""

    def __init__(self, store: Backend, settings: Settings, changes: Changes, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._store = store
        self._settings = settings
        self._changes = changes
        self._clock = clock
        self._pruner = Pruner(store, settings.event_retention, clock, sleep)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._caught_up = asyncio.Event()  # set after a background pass no deletion came during
        self._resume: tuple[int, int] | None = None  # where the retention walk goes on

    def start(self) -> None:
        """Start pruning events and, unless ``--gc off``, the lifecycle loop."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._pruner.run()))
        if self._settings.gc:
            self._tasks.append(loop.create_task(self._run()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def delete_context(self, context_id: int, recursive: bool = False,
                             namespace: str | None = None) -> list[int]:
        """Delete a context (and with ``recursive``, its descendants): the ids deleted. Within a
        ``namespace``, the context must be inside it, and so must every descendant deleted with it."""
        if namespace is not None:
            await tenancy.require_context(self._store, context_id, namespace)
            if recursive:
                below, _ = await self._store.children(context_id, True, MAX_DELETE)
                if any(not tenancy.inside(child.client_tag, namespace) for child in below):
                    raise Forbidden("a descendant of this context is outside the token's namespace",
                                    {"context_id": str(context_id), "namespace": namespace})
        deleted = await self._store.delete_context(context_id, recursive)
        self._changes.poke()
        self._caught_up.clear()
        self._wake.set()
        return deleted

    async def reclaim(self, budget: int = RECLAIM_BUDGET) -> Reclaimed:
        """Reclaim until nothing is left: what was freed in all."""
        total = Reclaimed()
        while True:
            step = await self._store.reclaim(budget)
            total += step
            if not step.more:
                return total
            await asyncio.sleep(0)  # let requests in between steps

    async def expire(self) -> tuple[int, int]:
        """Delete head-history entries and idempotency keys past their time: how many of each."""
        now = self._clock()
        history_days = self._settings.head_history_days
        history_before = int((now - history_days) * 1000) if history_days is not None else 0
        keys_before = int((now - self._settings.idempotency_ttl) * 1000)
        history = keys = 0
        while True:
            step = await self._store.expire(history_before, keys_before, EXPIRE_BUDGET)
            history, keys = history + step[0], keys + step[1]
            if max(step) < EXPIRE_BUDGET:
                return history, keys
            await asyncio.sleep(0)

    async def retain(self) -> int:
        """Delete the contexts past their retention: how many.

        One walk of the contexts by activity, newest first from the shortest retention's cutoff, a page
        of :data:`RETAIN_PAGE` at a time (O(page) on both backends: no scan under a tag prefix), at most
        :data:`RETAIN_PAGES_PER_PASS` pages a pass; the next pass resumes where this one stopped. Each
        context is judged by its own rule: the longest ``--retain`` prefix its tag starts with, else
        ``--retain-days``, else it is kept."""
        spans = [seconds for _, seconds in self._settings.retain]
        if self._settings.retain_days is not None:
            spans.append(self._settings.retain_days)
        if not spans:
            return 0
        now = self._clock()
        top = (int((now - min(spans)) * 1000), 0)
        before = self._resume if self._resume is not None and self._resume < top else top
        deleted = 0
        for _ in range(RETAIN_PAGES_PER_PASS):
            found, _ = await self._store.list_contexts(RETAIN_PAGE, None, None, before)
            deleted += await self._delete_quietly([c.context_id for c in found if self._expired(c, now)])
            if len(found) < RETAIN_PAGE:
                self._resume = None
                return deleted
            before = (found[-1].last_activity_ms, found[-1].context_id)
        self._resume = before
        return deleted

    def _expired(self, context: ContextRecord, now: float) -> bool:
        tag = context.client_tag
        matching = [(prefix, seconds) for prefix, seconds in self._settings.retain
                    if tag is not None and tag.startswith(prefix)]
        seconds = max(matching, key=lambda rule: len(rule[0]))[1] if matching else self._settings.retain_days
        return seconds is not None and context.last_activity_ms < (now - seconds) * 1000

    async def _delete_quietly(self, ids: list[int]) -> int:
        deleted = 0
        for context_id in ids:
            try:
                await self._store.delete_context(context_id)
                deleted += 1
            except NotFound:  # deleted meanwhile
                continue
        if deleted:
            self._changes.poke()
        return deleted

    async def maintain(self) -> dict[str, Any]:
        """One pass: expiry, retention, then reclamation to the end."""
        history, keys = await self.expire()
        retained = await self.retain()
        freed = await self.reclaim()
        return {"expired_head_history": history, "expired_idempotency_keys": keys, "retained_deleted": retained,
                "freed": freed}

    async def _run(self) -> None:
        while True:
            try:
                done = await self.maintain()
                if any(done[name] for name in ("expired_head_history", "expired_idempotency_keys",
                                               "retained_deleted")) or done["freed"].turns:
                    log.info("lifecycle: %s", done)
            except asyncio.CancelledError:
                raise
            except Exception:  # a closed or unreachable store: try again next time
                log.debug("lifecycle pass failed", exc_info=True)
            else:
                if not self._wake.is_set():  # no deletion came during the pass: it reclaimed every one
                    self._caught_up.set()
            try:  # asyncio.timeout, not wait_for: wait_for may swallow a cancel that races the wake-up
                async with asyncio.timeout(MAINTAIN_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def caught_up(self) -> None:
        """Wait until the background loop has reclaimed what every deletion so far left (never returns
        with ``--gc off``, which runs no loop)."""
        await self._caught_up.wait()

    async def pending(self) -> dict[str, Any]:
        """What awaits reclamation, as ``/v1/stats`` shows it."""
        return dataclasses.asdict(await self._store.pending())
