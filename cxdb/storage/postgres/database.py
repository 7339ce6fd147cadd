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
from .listener import CHANNEL
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
ROLLBACK_TIMEOUT = 5.0
ATTEMPTS = 4
BACKOFF = 0.05
COMMIT = f"NOTIFY {CHANNEL}; COMMIT"
"""Every write wakes the other gateways' streams (the notification is delivered at commit, if it
commits), where the engine has NOTIFY."""

_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
         asyncio.TimeoutError, PoolTimeout, asyncpg.exceptions.OperatorInterventionError,
         asyncpg.exceptions.InsufficientResourcesError)
"""The connection is gone, unusable (left mid-operation), or the server refuses work for now
(shutting down, starting, too many connections): the connection is dropped and the work tried again."""
_RETRY = (asyncpg.exceptions.TransactionRollbackError,)
"""The transaction was rolled back for a reason of concurrency (40001, 40P01): run it again."""


async def _roll_back(conn: Any) -> None:
    """End a failed transaction; a connection that cannot (it was lost, or left mid-operation) is
    closed, so the pool drops it instead of handing it to the next request."""
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.execute("ROLLBACK"), ROLLBACK_TIMEOUT)
    except Exception:
        conn.terminate()


def _disk_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "53100"


WRITE_CONNECTIONS = 4
"""Connections of the write pool: the batch of appends in flight, plus creates and publishes."""


class Database:
    """Two pools of connections to one PostgreSQL database: reads, and write transactions, so that a
    burst of one never waits for a connection held by the other.

    Connections are made when first needed (:class:`~cxdb.storage.postgres.pool.Pool`) and keep no
    session state: no advisory locks, no LISTEN, no SET, no cursor outside a transaction, so nothing
    needs resetting between requests. Statements are prepared once per connection (asyncpg's
    statement cache: one round trip per statement), and written so that their cached generic plans
    stay good as the tables grow from empty: lookups by key, and recursive walks whose every step is a
    primary-key lookup.
    """

    def __init__(self, url: str, pool_size: int) -> None:
        self._url = url
        # Every connection commits synchronously, whatever the URL or the server's default says: an
        # acknowledged write is on disk.
        self._settings = {"synchronous_commit": "on", "application_name": "cxdb"}
        self._reads = Pool(lambda: self._connect(self._settings), pool_size)
        self._writes: Pool | None = None
        self._closed = False
        self.notifies = True

    def _connect(self, settings: dict[str, str]) -> Awaitable[Any]:
        connection: Awaitable[Any] = asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT,
                                                     command_timeout=COMMAND_TIMEOUT, server_settings=settings)
        return connection

    async def probe_notify(self) -> None:
        """Whether the engine has NOTIFY (a PostgreSQL-compatible one may not): writes send it only then."""
        try:
            await self.read(lambda conn: conn.execute(f"NOTIFY {CHANNEL}"))
        except asyncpg.PostgresError as exc:
            log.info("no LISTEN/NOTIFY (%s): event streams poll", exc)
            self.notifies = False

    def listen_connection(self) -> Awaitable[Any]:
        """A connection of its own, outside the pools, for LISTEN."""
        return self._connect(self._settings)

    async def open(self) -> None:
        self._writes = Pool(lambda: self._connect(self._settings), WRITE_CONNECTIONS)

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

    async def write(self, fn: Callable[[Any], Awaitable[T]], begin: str = "BEGIN") -> T:
        """``fn(connection)`` in one transaction, committed before this returns; retried whole while
        nothing can have been committed. ``fn`` must have no effect outside the database.

        ``begin`` is the simple-protocol script that opens the transaction: it may go on after
        ``BEGIN`` with statements of its own (taking row locks, say) in the same round trip.
        """
        for attempt in range(ATTEMPTS):
            committing = False
            try:
                async with self._connection(self._writes) as conn:
                    await conn.execute(begin)
                    try:
                        result = await fn(conn)
                    except Exception:
                        await _roll_back(conn)
                        raise
                    except BaseException:  # cancelled: never wait on a connection left mid-statement
                        conn.terminate()  # the server rolls the transaction back when the socket closes
                        raise
                    committing = True
                    await conn.execute(COMMIT if self.notifies else "COMMIT")
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
