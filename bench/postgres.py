"""The PostgreSQL backend against the LMDB backend and the bare aiohttp baseline, in one run.

A private PostgreSQL cluster (bench/pgcluster.py, default settings: fsync and synchronous commit on)
runs on the same two cores as everything else. For 1 and 2 gateways (``--workers``: processes with a
connection pool each), wrk drives durable appends to one context and a typed page of 64 turns at the
LMDB store, the PostgreSQL store and the baseline, interleaved round by round; every figure is a
ratio against the LMDB backend or the baseline of the same round.

Run: ``python -m bench.postgres`` (wrk and PostgreSQL's server programs must be installed).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from .common import HERE, baseline_server, cxdb_server, median, table, wrk
from .http_load import prepare
from .pgcluster import Cluster

PAGE = "/v1/contexts/1/turns?limit=64"


async def _schema(url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    return f"{url}&search_path={name}"


def _measure(url: str, seconds: int, connections: int) -> tuple[dict[str, float], dict[str, float]]:
    post = wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua", seconds=seconds, connections=connections)
    get = wrk(f"{url}{PAGE}", seconds=seconds, connections=connections)
    return post, get


def run(seconds: int = 5, rounds: int = 3, connections: int = 32) -> dict[str, Any]:
    cluster = Cluster()
    results: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers in (1, 2):
                extra = ("--workers", str(workers), "--pool-size", "16")
                store = asyncio.run(_schema(cluster.url, f"bench_{workers}"))
                with cxdb_server(Path(tmp) / f"lmdb{workers}", *extra) as lmdb, cxdb_server(store, *extra) as pg:
                    page = prepare(lmdb)
                    prepare(pg)
                    page_file = Path(tmp) / "page.json"
                    page_file.write_bytes(page)
                    with baseline_server(page_file) as base:
                        for _ in range(rounds):
                            base_post, base_get = _measure(base, seconds, connections)
                            lmdb_post, lmdb_get = _measure(lmdb, seconds, connections)
                            pg_post, pg_get = _measure(pg, seconds, connections)
                            for name, value in (("base_post", base_post), ("base_get", base_get),
                                                ("lmdb_post", lmdb_post), ("lmdb_get", lmdb_get),
                                                ("pg_post", pg_post), ("pg_get", pg_get)):
                                note(f"{name}_{workers}", value["rps"])
                                note(f"{name}_{workers}_p99", value["p99_ms"])
                                note(f"{name}_{workers}_non2xx", value["non2xx"])
    finally:
        cluster.remove()
    out: dict[str, Any] = {key: median(values) for key, values in results.items()}
    for workers in (1, 2):
        for kind in ("post", "get"):
            out[f"pg_vs_lmdb_{kind}_{workers}"] = out[f"pg_{kind}_{workers}"] / out[f"lmdb_{kind}_{workers}"]
            out[f"pg_vs_base_{kind}_{workers}"] = out[f"pg_{kind}_{workers}"] / out[f"base_{kind}_{workers}"]
            out[f"lmdb_vs_base_{kind}_{workers}"] = out[f"lmdb_{kind}_{workers}"] / out[f"base_{kind}_{workers}"]
    return out


def rows(out: dict[str, Any]) -> list[list[str]]:
    """Rows for ``python -m bench``'s table."""
    found = []
    for workers in (1, 2):
        served = f"{workers} gateway{'s' if workers > 1 else ''}"
        found.append([f"PostgreSQL: durable appends over HTTP ({served})", f"{out[f'pg_post_{workers}']:,.0f}/s",
                      f"{out[f'pg_vs_lmdb_post_{workers}']:.2f}x LMDB, {out[f'pg_vs_base_post_{workers}']:.2f}x bare",
                      ">= 0.7x LMDB"])
        found.append([f"PostgreSQL: typed page of 64 over HTTP ({served})", f"{out[f'pg_get_{workers}']:,.0f}/s",
                      f"{out[f'pg_vs_lmdb_get_{workers}']:.2f}x LMDB, {out[f'pg_vs_base_get_{workers}']:.2f}x bare",
                      ">= 0.8x LMDB"])
    return found


def report(out: dict[str, Any]) -> str:
    rows = []
    for workers in (1, 2):
        for kind, label in (("post", "durable appends/s"), ("get", "typed page of 64/s")):
            rows.append([f"{label}, {workers} gateway{'s' if workers > 1 else ''}",
                         f"{out[f'pg_{kind}_{workers}']:,.0f}", f"{out[f'lmdb_{kind}_{workers}']:,.0f}",
                         f"{out[f'pg_vs_lmdb_{kind}_{workers}']:.2f}x", f"{out[f'pg_vs_base_{kind}_{workers}']:.2f}x",
                         f"{out[f'lmdb_vs_base_{kind}_{workers}']:.2f}x",
                         f"{out[f'pg_{kind}_{workers}_p99']:.1f} / {out[f'lmdb_{kind}_{workers}_p99']:.1f}"])
    errors = sum(value for key, value in out.items() if key.endswith("_non2xx"))
    return table(rows, ["", "PostgreSQL", "LMDB", "PG / LMDB", "PG / bare", "LMDB / bare", "p99 ms PG / LMDB"]) + (
        f"\n\nnon-2xx responses: {errors:.0f}")


if __name__ == "__main__":
    print(report(run()))
