"""Appends on PostgreSQL: the appends waiting in one gateway, grouped into one transaction.

As the LMDB writer does, each gateway runs one batch at a time and queues the appends that arrive
meanwhile for the next, so the round trips and the commit's flush are shared by a whole batch
(:mod:`cxdb.storage.postgres.batch` says what one batch does). One batch in flight measured faster
than several: concurrent batches of one gateway mostly lock the same contexts and the counter row,
so they wait on each other and are smaller, spending more round trips per append.

Lock order is the same everywhere (contexts by id, then the counter row), so two gateways never
deadlock; if the engine still reports one, or a serialization failure, the batch runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from ...codec import BlobCodec
from ...errors import CxdbError, StoreClosed, StoreError
from ..base import AppendResult, CommitObserver
from .batch import PendingAppend, Race, apply, begin
from .database import Database

__all__ = ["AppendWriter", "PendingAppend"]

log = logging.getLogger("cxdb.storage")
REGISTRY_RETRIES = 3


class AppendWriter:
    """Groups the appends of one gateway into transactions, one batch at a time."""

    def __init__(self, db: Database, codec: BlobCodec, observe: Callable[[bytes], None], max_batch: int,
                 on_commit: CommitObserver | None = None, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._codec = codec
        self._observe = observe
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._clock = clock
        self._pending: deque[PendingAppend] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def append(self, op: PendingAppend) -> list[AppendResult]:
        if self._closed:
            raise StoreClosed("the store is closed")
        self._pending.append(op)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cxdb-pg-writer")
        return await op.future

    async def close(self) -> None:
        """Finish every append already queued, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._commit([self._pending.popleft()
                                    for _ in range(min(self._max_batch, len(self._pending)))])
            if self._closed:
                return

    async def _commit(self, batch: list[PendingAppend]) -> None:
        started = time.perf_counter()
        try:
            for _ in range(REGISTRY_RETRIES):
                try:
                    outcome, new_payloads = await self._db.write(
                        lambda conn: apply(conn, batch, self._codec, self._clock), begin(batch))
                    break
                except Race:
                    continue
            else:
                raise StoreError("the registry or reclamation kept changing what a batch of appends read")
        except CxdbError as exc:
            outcome, new_payloads = [exc] * len(batch), []
        except Exception:
            log.exception("a batch of %d appends failed", len(batch))
            outcome, new_payloads = [StoreError("the append failed")] * len(batch), []
        for op, result in zip(batch, outcome, strict=True):
            if op.future.done():  # its caller went away; the append stands
                continue
            if isinstance(result, CxdbError):
                op.future.set_exception(result)
            else:
                op.future.set_result(result)
        for payload in new_payloads:
            self._observe(payload)
        if self._on_commit is not None:
            self._on_commit(sum(len(op.items) for op in batch), time.perf_counter() - started, len(self._pending))
