"""The connection pool, and the one place where PostgreSQL's failures become cxdb's errors.

Every read and every write transaction goes through :meth:`Database.read` or :meth:`Database.write`.
Both retry, a bounded number of times with a short backoff, what may succeed on a second try: a
serialization failure or deadlock (SQLSTATE class 40) and a lost or refused connection. When the
tries run out, or the connection is lost while a COMMIT is under way (its outcome is then unknown),
the caller gets :class:`~cxdb.errors.StoreUnavailable`: 503 with ``Retry-After``, never a hang and
never a 500 that leaks the driver's message. The pool reconnects by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from ...errors import StoreClosed, StoreFull, StoreUnavailable

__all__ = ["Database"]

log = logging.getLogger("cxdb.storage")
T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
"""Seconds to open one connection: a database that does not answer is reported, not waited for."""
ACQUIRE_TIMEOUT = 10.0
"""Seconds a request may wait for a free connection of the pool."""
COMMAND_TIMEOUT = 60.0
"""Seconds one statement may run."""
ATTEMPTS = 4
BACKOFF = 0.05

_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError,
         asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)
"""The connection is gone or the server refuses work for now (shutting down, starting, too many
connections)."""
_RETRY = (asyncpg.exceptions.TransactionRollbackError,)
"""The transaction was rolled back for a reason of concurrency (40001, 40P01): run it again."""


async def _reset(conn: Any) -> None:
    """What a connection needs before it serves another request. cxdb keeps no session state (no
    advisory locks, no LISTEN, no SET, no cursor outside a transaction), so asyncpg's default reset, a
    round trip on every release that halves the reads a gateway serves, is replaced by ending a
    transaction an interrupted request may have left open."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _disk_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "53100"


class Database:
    """A pool of connections to one PostgreSQL database, opened by :meth:`open`."""

    def __init__(self, url: str, pool_size: int) -> None:
        self._url = url
        self._pool_size = pool_size
        self._pool: Any = None
        self._closed = False

    async def open(self) -> None:
        # Every connection commits synchronously, whatever the URL or the server's default says: an
        # acknowledged write is on disk.
        self._pool = await asyncpg.create_pool(
            self._url, min_size=0, max_size=self._pool_size, timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT, reset=_reset,
            server_settings={"synchronous_commit": "on", "application_name": "cxdb"})

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._closed or self._pool is None:
            raise StoreClosed("the store is closed")
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            yield conn

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(connection)``, retried when the connection is lost; its statements each see their own
        snapshot, so a read that needs one snapshot is one statement."""
        for attempt in range(ATTEMPTS):
            try:
                async with self._connection() as conn:
                    return await fn(conn)
            except (*_LOST, *_RETRY) as exc:
                await self._failed(exc, attempt)
        raise AssertionError("unreachable")

    async def write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(connection)`` in one transaction, committed before this returns; retried whole while
        nothing can have been committed. ``fn`` must have no effect outside the database."""
        for attempt in range(ATTEMPTS):
            committing = False
            try:
                async with self._connection() as conn:
                    transaction = conn.transaction()
                    await transaction.start()
                    try:
                        result = await fn(conn)
                    except BaseException:
                        if not conn.is_closed():
                            await transaction.rollback()
                        raise
                    committing = True
                    await transaction.commit()
                    return result
            except _RETRY as exc:  # rolled back for certain, even at COMMIT
                await self._failed(exc, attempt)
            except _LOST as exc:
                if committing:
                    log.warning("database connection lost during COMMIT: %s", exc)
                    raise StoreUnavailable("the database connection was lost while committing; the write may or "
                                           "may not have been stored: retry it with an idempotency key") from exc
                await self._failed(exc, attempt)
        raise AssertionError("unreachable")

    async def _failed(self, exc: BaseException, attempt: int) -> None:
        if _disk_full(exc):
            raise StoreFull("the database has no space left") from exc
        if self._closed:
            raise StoreClosed("the store is closed") from exc
        if attempt + 1 >= ATTEMPTS:
            log.debug("database unavailable after %d tries: %s: %s", ATTEMPTS, type(exc).__name__, exc)
            raise StoreUnavailable("the database is unavailable; try again shortly") from exc
        await asyncio.sleep(BACKOFF * (1 << attempt))
