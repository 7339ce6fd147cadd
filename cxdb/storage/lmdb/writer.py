"""The single writer thread and its group commit.

Every write goes through one thread that owns every write transaction. It
drains the queued operations into one transaction, commits the batch (the one
fsync) and only then resolves each caller's future.

An operation that fails (NotFound, Conflict, a bug) fails alone; the rest of its
batch commits. Operations run straight in the batch's transaction, which is
cheapest when none fails. When one does fail, the attempt is rolled back whole,
and the batch runs again with each operation in a nested transaction of its own,
so the failed one is aborted alone, whatever it wrote before it raised. The next
``careful`` batches run that way too, so a stream of failing requests costs one
extra attempt per ``careful`` batches, not one per failure.

When the map is full, the whole batch is rolled back, the map grows, and the
batch runs again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import lmdb

from ...errors import CxdbError, StoreClosed, StoreError
from ..base import CommitObserver
from .counters import Counters
from .env import Dbs, Environment

__all__ = ["WriteContext", "Writer"]

T = TypeVar("T")
log = logging.getLogger("cxdb.storage")


@dataclass(slots=True)
class WriteContext:
    """What an operation sees: its transaction (the batch's, or a nested one when the batch runs
    carefully), the counters, the batch's clock reading, and hooks to run once the batch is durable.

    An operation that raises keeps none of its writes, whichever transaction it was given.
    """

    txn: Any
    dbs: Dbs
    counters: Counters
    now_ms: int
    after_commit: list[Callable[[], None]] = field(default_factory=list)


@dataclass(slots=True)
class _Pending(Generic[T]):
    fn: Callable[[WriteContext], T]
    loop: asyncio.AbstractEventLoop | None
    future: Any
    result: Any = None
    error: BaseException | None = None


_STOP = object()


class _Rerun(Exception):
    """An operation failed in a batch run without nested transactions: run the batch again with them."""


class Writer:
    """Owns the write side of an :class:`Environment`."""

    def __init__(self, env: Environment, max_batch: int = 512,
                 clock: Callable[[], float] = time.time, linger: float = 0.0005, careful: int = 64,
                 on_commit: CommitObserver | None = None) -> None:
        self._env = env
        self._on_commit = on_commit
        self._commit_seconds = 0.0
        self._max_batch = max_batch
        self._linger = linger
        self._careful = careful
        self._careful_left = 0  # batches still to run with a nested transaction per operation
        self._clock = clock
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._stopping = False
        self._lock = threading.Lock()
        self.batches = 0
        self.ops = 0
        self._thread = threading.Thread(target=self._run, name="cxdb-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[WriteContext], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn``; the future resolves after its batch is durable."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Pending(fn, None, future))
        return future

    def run(self, fn: Callable[[WriteContext], T]) -> asyncio.Future[T]:
        """Queue ``fn``; await the returned future, without blocking the event loop, until it is durable.

        A plain function returning the future, not a coroutine: one frame fewer on every write.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Pending(fn, loop, future))
        return future

    def _put(self, pending: _Pending[Any]) -> None:
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            self._queue.put(pending)

    def close(self) -> None:
        """Finish every queued operation, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        expected = 1
        while not self._stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Pending[Any]] = [first]
            self._commit(batch, expected)
            self._resolve(batch)
            expected = len(batch)

    def _commit(self, batch: list[_Pending[Any]], expected: int) -> None:
        gather = True
        nested = self._careful_left > 0
        if nested:
            self._careful_left -= 1
        while True:
            try:
                self._apply(batch, expected if gather else 0, nested)
                self.batches += 1
                self.ops += len(batch)
                if self._on_commit is not None:
                    try:
                        self._on_commit(len(batch), self._commit_seconds, self._queue.qsize())
                    except Exception:
                        log.exception("commit observer failed")
                return
            except _Rerun:
                gather = False  # the same batch again, each operation on its own
                nested = True
                self._careful_left = self._careful
            except lmdb.MapFullError:
                gather = False  # run the same batch again in a bigger map
                try:
                    self._env.grow()
                except CxdbError as exc:
                    self._fail_all(batch, exc)
                    return
            except CxdbError as exc:
                self._fail_all(batch, exc)
                return
            except Exception as exc:
                full = self._env.disk_full(exc)
                if full is not None:
                    # Reads go on, and writes succeed again as soon as space is freed.
                    log.warning("write refused: %s (%s)", full.message, exc)
                    self._fail_all(batch, full)
                    return
                log.exception("write transaction failed")
                self._fail_all(batch, StoreError("the write transaction failed", {"reason": type(exc).__name__}))
                return

    def _next(self, batch: list[_Pending[Any]], expected: int, deadline: float) -> _Pending[Any] | None:
        """The next queued operation for this batch, or None when the batch should commit.

        The callers of the last batch tend to come straight back, so while fewer than
        ``expected`` have arrived the batch waits for them, applying each as it comes, until
        ``linger`` has passed: one fsync then covers them all instead of a sliver of them.
        """
        if len(batch) >= self._max_batch:
            return None
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            remaining = deadline - time.monotonic()
            if len(batch) >= expected or remaining <= 0:
                return None
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
        if item is _STOP:
            self._stopping = True
            return None
        batch.append(item)
        return item  # type: ignore[no-any-return]

    def _apply(self, batch: list[_Pending[Any]], expected: int, nested: bool) -> None:
        """Run ``batch`` (and, while gathering, what arrives meanwhile) in one transaction, then commit.

        Without ``nested``, the first operation to fail raises :class:`_Rerun` and nothing of the
        attempt is kept.
        """
        env = self._env
        txn = env.begin_write()
        try:
            counters = Counters.load(txn, env.dbs.meta)
            now_ms = int(self._clock() * 1000)
            deadline = time.monotonic() + self._linger
            hooks: list[Callable[[], None]] = []
            index = 0
            while True:
                if index < len(batch):
                    pending = batch[index]
                elif expected and not self._stopping:
                    found = self._next(batch, expected, deadline)
                    if found is None:
                        break
                    pending = found
                else:
                    break
                index += 1
                child = env.begin_nested(txn) if nested else txn
                ctx = WriteContext(child, env.dbs, counters.fork() if nested else counters, now_ms)
                try:
                    pending.result = pending.fn(ctx)
                    pending.error = None
                except lmdb.MapFullError:
                    if nested:
                        child.abort()
                    raise
                except Exception as exc:
                    if not nested:
                        raise _Rerun from exc
                    child.abort()
                    if isinstance(exc, CxdbError):
                        pending.error = exc
                    else:  # a bug in one operation must not take down the batch
                        log.exception("write operation failed")
                        pending.error = StoreError("the write failed", {"reason": type(exc).__name__})
                    continue
                if nested:
                    child.commit()
                    counters.absorb(ctx.counters)
                hooks.extend(ctx.after_commit)
            counters.save(txn, env.dbs.meta)
        except BaseException:
            txn.abort()
            raise
        started = time.perf_counter()
        txn.commit()
        self._commit_seconds = time.perf_counter() - started
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("after-commit hook failed")

    @staticmethod
    def _fail_all(batch: list[_Pending[Any]], exc: CxdbError) -> None:
        for pending in batch:
            pending.error = exc

    @staticmethod
    def _resolve(batch: list[_Pending[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending[Any]]] = {}
        for pending in batch:
            if pending.loop is None:
                if pending.future.done():  # cancelled by its caller; the write stands all the same
                    continue
                if pending.error is not None:
                    pending.future.set_exception(pending.error)
                else:
                    pending.future.set_result(pending.result)
            else:
                by_loop.setdefault(pending.loop, []).append(pending)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the loop closed while we committed; nobody is waiting
                pass


def _settle(items: list[_Pending[Any]]) -> None:
    for pending in items:
        if pending.future.done():
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(pending.result)
