"""A small pool of asyncpg connections.

asyncpg's own pool costs about as much Python time per acquire and release as the query a page read
makes (its holders, its reset, its inactivity timers); on a gateway whose reads are one point lookup
each, that halved the pages served. This pool does only what cxdb needs: at most ``size``
connections, made when first needed; an idle one is taken in O(1); a lost or interrupted one is
dropped and its slot given to the next caller, who connects anew; waiters are served in order and
give up after a timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Pool", "PoolClosed", "PoolTimeout"]


class PoolTimeout(Exception):
    """No connection became free in time."""


class PoolClosed(Exception):
    """The pool was closed."""


class Pool:
    def __init__(self, connect: Callable[[], Awaitable[Any]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Any] = []
        self._open = 0  # connections that exist or are being made
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closed = False

    async def acquire(self, timeout: float) -> Any:
        while True:
            if self._closed:
                raise PoolClosed()
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._open < self._size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._hand(None)
                    raise
            conn = await self._wait(timeout)
            if conn is not None:
                return conn
            # A slot was freed (a connection was lost): loop to make one, or wait again.

    async def _wait(self, timeout: float) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done():  # handed a connection (or a free slot) just as the wait ended: pass it on
                handed = waiter.result()
                if handed is not None:
                    self.release(handed)
                else:
                    self._hand(None)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolTimeout() from exc
            raise

    def release(self, conn: Any, broken: bool = False) -> None:
        """Give a connection back; ``broken`` (or a connection closed, or left inside a transaction by
        an interrupted request) drops it."""
        if broken or self._closed or conn.is_closed() or conn.is_in_transaction():
            self._open -= 1
            if not conn.is_closed():
                conn.terminate()
            self._hand(None)
            return
        self._hand(conn)

    def _hand(self, conn: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()
        while self._waiters:  # each wakes, finds the pool closed, and says so
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
