"""kill -9 during reclamation, on each backend: a process reclaiming in small steps is killed after a
random number of them; afterwards the store checks clean (reference counts included), every context
left pages exactly as before, and reclamation resumes where it stopped and completes."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import msgpack

from cxdb.config import Settings
from cxdb.storage import Backend, open_backend
from cxdb.storage.base import Pending

CHILD = Path(__file__).with_name("reclaim_child.py")


async def opened(url: str) -> Backend:
    store = open_backend(Settings(store=url))
    await store.start()
    return store


async def fill(url: str) -> dict[int, list[int]]:
    """Six contexts of 120 turns, each with a fork holding its first 60 and one of its own; the six
    deleted, so 6 x 60 turns, their head history and keys await reclamation. The forks' pages."""
    store = await opened(url)
    try:
        kept: dict[int, list[int]] = {}
        for n in range(6):
            doomed = await store.create_context()
            turns = [(await store.append(doomed.context_id, "t", 1, msgpack.packb({"n": n, "i": i, "s": i % 9}),
                                         idempotency_key=f"k{i}")).turn.turn_id for i in range(120)]
            await store.append(doomed.context_id, "t", 1, msgpack.packb({"branch": n}), parent_turn_id=turns[100])
            fork = await store.create_context(turns[59])
            await store.append(fork.context_id, "t", 1, msgpack.packb({"fork": n}))
            await store.delete_context(doomed.context_id)
            kept[fork.context_id] = await page(store, fork.context_id)
        return kept
    finally:
        await store.close()


async def page(store: Backend, context_id: int) -> list[int]:
    _, start, _ = await store.page_start(context_id)
    found, _ = await store.chain(start, 1000)
    return [t.turn_id for t in found]


def kill_after(url: str, steps: int) -> bool:
    """Run the child until it has printed ``steps`` steps, then SIGKILL it; True if it finished first."""
    proc = subprocess.Popen([sys.executable, str(CHILD), url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    finished = False
    for _ in range(steps):
        line = proc.stdout.readline().strip()
        if line == "done":
            finished = True
            break
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return finished


async def verify(url: str, kept: dict[int, list[int]]) -> Pending:
    store = await opened(url)
    try:
        report = await store.check()
        assert report["ok"], report
        assert {context_id: await page(store, context_id) for context_id in kept} == kept
        for context_id in kept:
            for turn_id in kept[context_id]:
                turn = await store.turn(turn_id)
                assert turn is not None and await store.get_blob(turn.content_hash)
        return await store.pending()
    finally:
        await store.close()


def test_kill_9_during_reclamation_then_it_resumes_and_completes(store_url: str) -> None:
    kept = asyncio.run(fill(store_url))
    rng = random.Random(20261202)
    waiting = asyncio.run(verify(store_url, kept))
    assert waiting.contexts == 6
    kills = 0
    while True:
        finished = kill_after(store_url, rng.randint(10, 40))
        after = asyncio.run(verify(store_url, kept))
        if finished:
            break
        kills += 1
        assert after != Pending() and after.contexts <= waiting.contexts
    assert kills >= 3  # killed mid-way, repeatedly, before it finished
    assert after == Pending()

    async def totals() -> tuple[int, int]:
        store = await opened(store_url)
        try:
            stats = await store.stats()
            return stats.turns, stats.contexts
        finally:
            await store.close()

    assert asyncio.run(totals()) == (sum(len(p) for p in kept.values()), 6)
