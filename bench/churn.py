"""Churn: does the store stop growing when data comes and goes?

Each cycle appends N turns to fresh contexts (batches of 100 turns of ~300 bytes, a payload unique to
the cycle), deletes those contexts, and reclaims to the end. After every cycle: the LMDB data file's
size, and the PostgreSQL database's size (``pg_database_size``, a private cluster, after a plain
``VACUUM``: what autovacuum does on its own schedule, run here so the figure does not depend on when
it happens to wake). Each cycle's events are pruned too, as an ``--event-retention`` shorter than the
run would: the event log is bounded by its retention, not by reclamation. The target: the size after
cycle 10 within 1.2x the size after cycle 2 (cycle 1 grows the store to its working size; after that,
freed pages and rows are reused).

Also, in the same run and as ratios: reclamation's turns/s against the batch appends' turns/s that
wrote them, and the longest single reclamation step (one write transaction of at most
``RECLAIM_BUDGET`` records) against the mean time of one append batch of 100 (on LMDB, what an append
may wait behind it: there is one write lock).

Run: ``python -m bench.churn [--cycles 10] [--turns 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgpack

from cxdb.service.lifecycle import RECLAIM_BUDGET
from cxdb.storage import Backend, NewTurn
from cxdb.storage.lmdb.backend import LmdbBackend
from cxdb.storage.postgres import PostgresBackend

from .common import message, table
from .pgcluster import Cluster, NoPostgres

PER_CONTEXT = 100


async def _cycle(store: Backend, cycle: int, turns: int) -> dict[str, float]:
    """One cycle: append, delete, reclaim; the rates and the longest step."""
    started = time.perf_counter()
    contexts = []
    batches = 0
    for first in range(0, turns, PER_CONTEXT):
        context = await store.create_context(0, f"churn/{cycle}")
        contexts.append(context.context_id)
        batch = [NewTurn("bench.Message", 1, msgpack.packb({**message(first + i), "cycle": cycle}))
                 for i in range(min(PER_CONTEXT, turns - first))]
        await store.append_batch(context.context_id, batch)
        batches += 1
    appended = time.perf_counter() - started
    for context_id in contexts:
        await store.delete_context(context_id)
    started = time.perf_counter()
    steps: list[float] = []
    freed = 0
    while True:
        step_started = time.perf_counter()
        step = await store.reclaim(RECLAIM_BUDGET)
        steps.append(time.perf_counter() - step_started)
        freed += step.turns
        if not step.more:
            break
    reclaimed = time.perf_counter() - started
    assert freed == turns, (freed, turns)
    # The event log is bounded by --event-retention (7 days), not by reclamation: prune it as a
    # retention shorter than the run would, so the figure is the store's own.
    while await store.prune_events(int(time.time() * 1000) + 1, 10_000) == 10_000:
        pass
    return {"append_per_s": turns / appended, "reclaim_per_s": turns / reclaimed, "longest_step_s": max(steps),
            "median_step_s": statistics.median(steps), "batch_s": appended / batches}


async def _lmdb(path: Path, cycles: int, turns: int) -> list[dict[str, float]]:
    store = LmdbBackend(path, map_size=1 << 32, max_batch=512)
    found = []
    try:
        for cycle in range(1, cycles + 1):
            figures = await _cycle(store, cycle, turns)
            figures["size"] = (path / "data.mdb").stat().st_size
            figures["used"] = (await store.figures())["used_bytes"]
            found.append(figures)
    finally:
        await store.close()
    return found


async def _postgres(url: str, cycles: int, turns: int) -> list[dict[str, float]]:
    store = PostgresBackend(url, 4, 512)
    await store.start()
    found = []
    try:
        for cycle in range(1, cycles + 1):
            figures = await _cycle(store, cycle, turns)
            conn = await asyncpg.connect(url)
            try:
                await conn.execute("VACUUM")
                figures["size"] = await conn.fetchval("SELECT pg_database_size(current_database())")
            finally:
                await conn.close()
            found.append(figures)
    finally:
        await store.close()
    return found


def _rows(name: str, cycles: list[dict[str, float]]) -> list[list[str]]:
    second, last = cycles[1]["size"], cycles[-1]["size"]
    append = sum(c["append_per_s"] for c in cycles) / len(cycles)
    reclaim = sum(c["reclaim_per_s"] for c in cycles) / len(cycles)
    longest = max(c["longest_step_s"] for c in cycles)
    median = statistics.median(c["median_step_s"] for c in cycles)
    batch = sum(c["batch_s"] for c in cycles) / len(cycles)
    sizes = " ".join(f"{c['size'] / 2**20:.1f}" for c in cycles)
    return [
        [name, f"size after cycle {len(cycles)} / after cycle 2", f"{last / second:.2f}x",
         f"{last / 2**20:.1f} MiB / {second / 2**20:.1f} MiB (each cycle, MiB: {sizes})"],
        [name, "reclamation turns/s / batch-append turns/s", f"{reclaim / append:.2f}x",
         f"{reclaim:,.0f} / {append:,.0f}"],
        [name, "median reclamation step (one transaction) / one append batch of 100", f"{median / batch:.2f}x",
         f"{median * 1000:.1f} ms / {batch * 1000:.1f} ms"],
        [name, "longest reclamation step / one append batch of 100", f"{longest / batch:.2f}x",
         f"{longest * 1000:.1f} ms / {batch * 1000:.1f} ms"],
    ]


def run(cycles: int = 10, turns: int = 20_000) -> dict[str, Any]:
    rows: list[list[str]] = []
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        result["lmdb"] = asyncio.run(_lmdb(Path(tmp) / "data", cycles, turns))
        rows += _rows("LMDB", result["lmdb"])
    try:
        cluster = Cluster()
    except NoPostgres as exc:
        print(f"PostgreSQL skipped: {exc}")
    else:
        try:
            result["postgres"] = asyncio.run(_postgres(cluster.url, cycles, turns))
            rows += _rows("PostgreSQL", result["postgres"])
        finally:
            cluster.remove()
    print(table(rows, ["backend", "figure", "ratio", "values"]))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--turns", type=int, default=20_000, help="Turns appended and deleted per cycle.")
    options = parser.parse_args()
    run(options.cycles, options.turns)
