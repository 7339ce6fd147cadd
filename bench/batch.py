"""Batch append against single appends, in the same run: durable turns per second over HTTP with wrk,
batches of 100 turns of about 300 bytes against one turn per request, both over 32 connections,
round-robin over 64 contexts. On LMDB with one server process and with ``--workers 2`` (the two
cores of this machine), and on PostgreSQL (a private cluster) with one. Medians of interleaved rounds.

Run: ``python -m bench.batch`` (wrk must be installed).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from .common import HERE, cxdb_server, have_wrk, table, wrk
from .http_load import prepare
from .pgcluster import Cluster, NoPostgres
from .postgres import _schema

BATCH = 100
CONNECTIONS = 32


def _measure(url: str, seconds: int, rounds: int) -> dict[str, float]:
    prepare(url)
    single: list[float] = []
    batched: list[float] = []
    p99: list[float] = []
    for _ in range(rounds):
        single.append(wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua", connections=CONNECTIONS,
                          seconds=seconds)["rps"])
        result = wrk(f"{url}/v1/contexts/1/append-batch", HERE / "append.lua", connections=CONNECTIONS,
                     seconds=seconds, env={"CXDB_BATCH": str(BATCH)})
        if result["non2xx"]:
            raise RuntimeError(f"{result['non2xx']:.0f} batches failed")
        batched.append(result["rps"] * BATCH)
        p99.append(result["p99_ms"])
    return {"single": statistics.median(single), "batched": statistics.median(batched),
            "batch_p99_ms": statistics.median(p99)}


def run(seconds: int = 5, rounds: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with cxdb_server(Path(tmp) / "one") as url:
            out["lmdb"] = _measure(url, seconds, rounds)
        with cxdb_server(Path(tmp) / "two", "--workers", "2") as url:
            out["lmdb, --workers 2"] = _measure(url, seconds, rounds)
        try:
            cluster = Cluster()
        except NoPostgres:
            return out
        try:
            store = asyncio.run(_schema(cluster.url, "bench_batch"))
            with cxdb_server(store) as url:
                out["postgres"] = _measure(url, seconds, rounds)
        finally:
            cluster.remove()
    return out


def rows(out: dict[str, Any]) -> list[list[str]]:
    found = []
    for backend, figures in out.items():
        found.append([f"{backend}: durable turns/s, batches of {BATCH} ({CONNECTIONS} connections)",
                      f"{figures['batched']:,.0f}/s, p99 {figures['batch_p99_ms']:.1f} ms a batch",
                      f"{figures['batched'] / figures['single']:.1f}x single appends ({figures['single']:,.0f}/s)",
                      ">= 50,000/s"])
    return found


if __name__ == "__main__":
    if not have_wrk():
        raise SystemExit("wrk is not installed")
    print(table(rows(run()), ["scenario", "measured", "relative", "target"]))
