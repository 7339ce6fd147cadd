"""Context reads, coalesced: the hot read of every page is one context row, and the reads that arrive
while one query is out go together in the next.

Under load, a gateway answers dozens of page requests at once, each needing its context's head from
the database. One query for all of them, ``WHERE context_id = ANY($1)``, pays the round trip's system
calls, the driver's protocol work and the server's per-statement cost once. Each read is still
linearizable: its query is sent after the read began, so it sees every commit acknowledged before.
With nothing out, a read's query leaves at once: coalescing adds no latency to a quiet gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .database import Database
from .rows import CONTEXT

__all__ = ["ContextReads"]

_CONTEXTS = (f"SELECT {CONTEXT}, (SELECT bundles FROM counters WHERE id = 1) FROM contexts "
             "WHERE context_id = ANY($1::bigint[])")
IN_FLIGHT = 2
"""Queries of context reads a gateway has out at once."""
MAX_IDS = 512
"""Most contexts one query reads."""


def _fetcher(ids: list[int]) -> Callable[[Any], Awaitable[Any]]:
    return lambda conn: conn.fetch(_CONTEXTS, ids)


class ContextReads:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: dict[int, list[asyncio.Future[Any]]] = {}
        self._in_flight = 0

    async def get(self, context_id: int) -> Any:
        """The context's row (its columns, then the registry generation), or None."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(context_id, []).append(future)
        if self._in_flight < IN_FLIGHT:
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                ids = list(self._pending)[:MAX_IDS]
                waiting = {context_id: self._pending.pop(context_id) for context_id in ids}
                try:
                    rows = await self._db.read(_fetcher(ids))
                except BaseException as exc:
                    for futures in waiting.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                found = {row[0]: row for row in rows}
                for context_id, futures in waiting.items():
                    row = found.get(context_id)
                    for future in futures:
                        if not future.done():
                            future.set_result(row)
        finally:
            self._in_flight -= 1
