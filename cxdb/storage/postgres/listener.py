"""Wake-ups from other gateways: every write transaction ends with ``NOTIFY cxdb_events`` (delivered
at commit, and only if it commits), and each gateway keeps one connection that LISTENs and calls
its ``wake`` for each.

Best effort by design: the event log is the truth and streams poll it anyway. When the listening
connection is lost, wake-ups stop until it is back (tried again with a growing pause), and the
polling fallback carries on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["CHANNEL", "Listener"]

log = logging.getLogger("cxdb.storage")
CHANNEL = "cxdb_events"
RETRY_MIN = 0.5
RETRY_MAX = 10.0
CHECK_SECONDS = 1.0


class Listener:
    """One LISTEN connection, kept open while the backend runs."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], wake: Callable[[], None]) -> None:
        self._connect = connect
        self._wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        pause = RETRY_MIN
        while True:
            conn = None
            try:
                conn = await self._connect()
                await conn.add_listener(CHANNEL, self._notified)
                pause = RETRY_MIN
                self._wake()  # anything committed while nobody listened is read now
                while not conn.is_closed():  # a lost connection is noticed within a check
                    await asyncio.sleep(CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is out of reach: polling goes on, and so do we
                log.debug("LISTEN connection failed: %s: %s", type(exc).__name__, exc)
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(pause)
            pause = min(RETRY_MAX, pause * 2)

    def _notified(self, *_: Any) -> None:
        self._wake()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
