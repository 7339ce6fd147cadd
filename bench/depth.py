"""Paging cost at depth 1,000,000 against depth 10, and server memory against store size."""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import msgpack
import orjson

from cxdb.storage import Store

from .common import free_port, rss_kib, wait_for_port


async def build(path: Path, depth: int, producers: int = 256) -> tuple[int, int, list[int]]:
    """A store with one context ``depth`` turns deep and one 10 deep; returns their ids and some turn ids."""
    with Store(path) as store:
        deep = (await store.create_context()).context_id
        shallow = (await store.create_context()).context_id
        for i in range(10):
            await store.append(shallow, "bench.Tiny", 1, msgpack.packb({"i": i}))
        ids: list[int] = []
        every = max(1, depth // 100)
        counter = iter(range(depth))

        async def produce() -> None:
            for i in counter:
                result = await store.append(deep, "bench.Tiny", 1, msgpack.packb({"i": i, "t": "turn"}))
                if i % every == 0:
                    ids.append(result.turn.turn_id)

        await asyncio.gather(*(produce() for _ in range(producers)))
        return deep, shallow, ids


def time_pages(path: Path, deep: int, shallow: int, cursors: list[int], rounds: int = 3000) -> dict[str, float]:
    rng = random.Random(7)
    with Store(path) as store:
        def clock(fn: object) -> float:
            for _ in range(300):  # warm the caches first
                fn()  # type: ignore[operator]
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                fn()  # type: ignore[operator]
                samples.append(time.perf_counter() - start)
            return statistics.median(samples) * 1e6

        head = store.get_context(shallow).head_turn_id
        shallow_cursors = [turn.turn_id for turn in store.page(shallow, 10).turns[5:]]
        assert store.get_turn(head).depth == 10
        results = {
            "head_page_depth_10_us": clock(lambda: store.page(shallow, 10)),
            "head_page_deep_us": clock(lambda: store.page(deep, 10)),
            "cursor_page_depth_10_us": clock(lambda: store.page(shallow, 5, rng.choice(shallow_cursors))),
            "cursor_page_deep_us": clock(lambda: store.page(deep, 5, rng.choice(cursors))),
        }
        # Paging the way a reader does: each page's cursor is the one the page before handed out.
        walk = {"cursor": None}

        def next_page(context_id: int) -> None:
            page = store.page(context_id, 5, walk["cursor"])
            walk["cursor"] = page.next_before_turn_id

        results["sequential_page_deep_us"] = clock(lambda: next_page(deep))
        walk["cursor"] = None
        results["sequential_page_depth_10_us"] = clock(lambda: next_page(shallow))
    results["head_deep_vs_10"] = results["head_page_deep_us"] / results["head_page_depth_10_us"]
    results["cursor_deep_vs_10"] = results["cursor_page_deep_us"] / results["cursor_page_depth_10_us"]
    results["sequential_deep_vs_10"] = results["sequential_page_deep_us"] / results["sequential_page_depth_10_us"]
    return results


def server_rss(path: Path, context_id: int, cursors: list[int], requests: int = 3000) -> dict[str, int]:
    """RSS of ``cxdb serve`` over ``path`` after paging all over a context's chain."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cxdb", "serve", "--data-dir", str(path), "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        rng = random.Random(3)
        for _ in range(requests):
            cursor = rng.choice(cursors)
            with urllib.request.urlopen(  # noqa: S310 - loopback only
                    f"http://127.0.0.1:{port}/v1/contexts/{context_id}/turns?limit=64&before_turn_id={cursor}") as r:
                orjson.loads(r.read())
        return rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(depth: int = 1_000_000, small: int = 10_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        big_path, small_path = Path(tmp) / "big", Path(tmp) / "small"
        start = time.perf_counter()
        deep, shallow, cursors = asyncio.run(build(big_path, depth))
        build_s = time.perf_counter() - start
        small_deep, _, small_cursors = asyncio.run(build(small_path, small))
        out: dict[str, float] = {"depth": float(depth), "build_appends_per_s": depth / build_s}
        out.update(time_pages(big_path, deep, shallow, cursors))
        # The same workload on both: 100 cursors spread along the chain, so the bounded caches hold
        # as much in both servers and only the store's size differs.
        big_rss = server_rss(big_path, deep, cursors)
        small_rss = server_rss(small_path, small_deep, small_cursors)
        out.update({"rss_anon_kib_small": small_rss["RssAnon"], "rss_anon_kib_big": big_rss["RssAnon"],
                    "rss_file_kib_small": small_rss["RssFile"], "rss_file_kib_big": big_rss["RssFile"],
                    "rss_anon_ratio": big_rss["RssAnon"] / small_rss["RssAnon"],
                    "store_mib_big": sum(f.stat().st_size for f in big_path.iterdir()) / 2**20})
    return out


if __name__ == "__main__":
    for key, value in run(depth=int(sys.argv[1]) if len(sys.argv) > 1 else 100_000).items():
        print(f"{key:>24}: {value:,.2f}")
