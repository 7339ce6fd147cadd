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
from .pool import Pool, PoolClosed, PoolTimeout

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

_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError, PoolTimeout,
         asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)
"""The connection is gone or the server refuses work for now (shutting down, starting, too many
connections)."""
_RETRY = (asyncpg.exceptions.TransactionRollbackError,)
"""The transaction was rolled back for a reason of concurrency (40001, 40P01): run it again."""


def _disk_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "53100"


WRITE_CONNECTIONS = 4
"""Connections of the write pool: one batch of appends at a time, plus creates and publishes."""


class Database:
    """Two pools of connections to one PostgreSQL database: reads, and write transactions.

    Connections are made when first needed (:class:`~cxdb.storage.postgres.pool.Pool`) and keep no
    session state: no advisory locks, no LISTEN, no SET, no cursor outside a transaction, so nothing
    needs resetting between requests. Both use prepared statements (asyncpg's statement cache: one
    round trip per statement). Reads
    are point lookups whose plan never depends on the data, so PostgreSQL's cached generic plans
    serve them. The write pool's connections plan each execution for the arrays its batch sends
    (``plan_cache_mode = force_custom_plan``, on engines that have the setting): a generic plan fixed
    while the tables were still nearly empty (a hash join over a scan of ``turns``) would otherwise
    stick to a connection and make every batch slower as the store grows.
    """

    def __init__(self, url: str, pool_size: int) -> None:
        self._url = url
        # Every connection commits synchronously, whatever the URL or the server's default says: an
        # acknowledged write is on disk.
        self._settings = {"synchronous_commit": "on", "application_name": "cxdb"}
        self._reads = Pool(lambda: self._connect(self._settings), pool_size)
        self._writes: Pool | None = None
        self._closed = False

    def _connect(self, settings: dict[str, str]) -> Awaitable[Any]:
        connection: Awaitable[Any] = asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT,
                                                     command_timeout=COMMAND_TIMEOUT, server_settings=settings)
        return connection

    async def open(self) -> None:
        settings = self._settings
        if await self.read(lambda conn: conn.fetchval("SELECT current_setting('plan_cache_mode', true)")):
            settings = {**settings, "plan_cache_mode": "force_custom_plan"}
        self._writes = Pool(lambda: self._connect(settings), WRITE_CONNECTIONS)

    async def close(self) -> None:
        self._closed = True
        for pool in (self._reads, self._writes):
            if pool is not None:
                await pool.close()

    @asynccontextmanager
    async def _connection(self, pool: Pool | None) -> AsyncIterator[Any]:
        if self._closed or pool is None:
            raise StoreClosed("the store is closed")
        try:
            conn = await pool.acquire(ACQUIRE_TIMEOUT)
        except PoolClosed as exc:
            raise StoreClosed("the store is closed") from exc
        try:
            yield conn
        except (*_LOST, asyncio.CancelledError):
            pool.release(conn, broken=True)
            raise
        except BaseException:
            pool.release(conn)
            raise
        pool.release(conn)

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(connection)``, retried when the connection is lost; its statements each see their own
        snapshot, so a read that needs one snapshot is one statement."""
        for attempt in range(ATTEMPTS):
            try:
                async with self._connection(self._reads) as conn:
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
                async with self._connection(self._writes) as conn:
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
