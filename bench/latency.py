"""Append latency at a fixed arrival rate (open loop): requests leave on schedule, whatever the
server's pace, and each latency is measured from its scheduled send time (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from pathlib import Path

import aiohttp

from .common import append_body, cxdb_server
from .http_load import prepare


async def open_loop(url: str, rate: int, seconds: float, contexts: int = 64) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            async with session.post(f"{url}/v1/contexts/{i % contexts + 1}/append", data=append_body(i),
                                    headers={"Content-Type": "application/json"}) as response:
                await response.read()
                if response.status != 201:
                    errors += 1
            latencies.append(time.perf_counter() - scheduled)

        total = int(rate * seconds)
        start = time.perf_counter() + 0.05
        # Only the unfinished: a final gather over every request ever sent would delay the last ones.
        in_flight: set[asyncio.Task[None]] = set()
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"rate": float(rate), "requests": float(len(latencies)), "errors": float(errors),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": latencies[-1] * 1000}


def run(rate: int = 1000, seconds: float = 10.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        prepare(url, turns=0)
        asyncio.run(open_loop(url, rate, 1.0))  # warm up
        # This client is Python too: a full collection of its own heap stalls it for 25-40 ms,
        # which would be counted against the server. The server keeps its collector.
        gc.collect()
        gc.disable()
        try:
            return asyncio.run(open_loop(url, rate, seconds))
        finally:
            gc.enable()


if __name__ == "__main__":
    print(run(seconds=5))
