"""LISTEN/NOTIFY between gateways: each commit through one backend wakes another's watcher, and a
listening connection that is lost comes back by itself."""

from __future__ import annotations

import asyncio

import asyncpg

from cxdb.storage.postgres import PostgresBackend
from tests.conftest import POSTGRES


async def until(predicate: object, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_commit_elsewhere_wakes_the_watcher(postgres_url: str) -> None:
    wakes: list[int] = []
    watching = PostgresBackend(postgres_url, pool_size=2, max_batch=64)
    writing = PostgresBackend(postgres_url, pool_size=2, max_batch=64)
    await watching.start()
    await writing.start()
    assert watching.watch(lambda: wakes.append(1)) is True
    try:
        await until(lambda: wakes)  # one wake when the listener connects: whatever came before is read
        connected = len(wakes)
        context = await writing.create_context()
        await until(lambda: len(wakes) > connected)
        for n in range(3):
            woken = len(wakes)
            await writing.append(context.context_id, "t", 1, bytes([0x90 + n]))
            await until(lambda woken=woken: len(wakes) > woken)
    finally:
        await writing.close()
        await watching.close()


async def test_a_lost_listening_connection_comes_back(postgres_url: str) -> None:
    assert POSTGRES is not None
    wakes: list[int] = []
    watching = PostgresBackend(postgres_url, pool_size=2, max_batch=64)
    await watching.start()
    watching.watch(lambda: wakes.append(1))
    admin = await asyncpg.connect(POSTGRES)
    try:
        await until(lambda: wakes)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' "
            "AND pid <> pg_backend_pid()")
        assert killed >= 1
        before = len(wakes)
        await until(lambda: len(wakes) > before)  # reconnected (it wakes once on connecting)
        after = len(wakes)
        await admin.execute("NOTIFY cxdb_events")
        await until(lambda: len(wakes) > after)
    finally:
        await admin.close()
        await watching.close()
