"""MCP subscriptions: time from an HTTP append's acknowledgement to ``notifications/resources/updated``
reaching a subscriber through the official SDK's client, against the same append's ``turn`` event
reaching a ``/follow`` stream of the same context, both listening at once in the same run.

Run: ``python -m bench.mcp`` (needs the test extra's ``mcp``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cxdb import Client

from .common import cxdb_server, table

APPENDS = 60


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(url: str) -> dict[str, list[float]]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    http = Client(url)
    context_id = str(http.create_context(client_tag="bench/mcp").context_id)
    notes: asyncio.Queue[float] = asyncio.Queue()
    follows: asyncio.Queue[float] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            notes.put_nowait(time.perf_counter())

    def follow() -> None:
        for _ in http.follow(context_id, after_turn_id=0):
            loop.call_soon_threadsafe(follows.put_nowait, time.perf_counter())

    threading.Thread(target=follow, daemon=True).start()
    out: dict[str, list[float]] = {"mcp": [], "follow": []}
    async with streamable_http_client(f"{url}/mcp") as (read, write), \
            ClientSession(read, write, message_handler=on_message) as session:
        await session.initialize()
        await session.subscribe_resource(f"cxdb://contexts/{context_id}")
        await asyncio.sleep(0.5)
        for i in range(APPENDS):
            await asyncio.to_thread(http.append_turn, context_id, type_id="t", type_version=1, data={"i": i})
            acknowledged = time.perf_counter()
            out["mcp"].append((await asyncio.wait_for(notes.get(), 10) - acknowledged) * 1000)
            out["follow"].append((await asyncio.wait_for(follows.get(), 10) - acknowledged) * 1000)
            await asyncio.sleep(0.05)
    return out


def run() -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")  # the SDK warns that its newest revision replaced resources/subscribe
    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        found = asyncio.run(_measure(url))
    return {name: {"p50": statistics.median(values), "p99": _quantile(values, 0.99), "max": max(values)}
            for name, values in found.items()}


def rows(out: dict[str, Any]) -> list[list[str]]:
    mcp, follow = out["mcp"], out["follow"]
    return [[f"MCP: append acknowledged -> notifications/resources/updated ({APPENDS} appends)",
             f"p50 {mcp['p50']:.1f} ms, p99 {mcp['p99']:.1f} ms, max {mcp['max']:.1f} ms",
             f"{mcp['p50'] / follow['p50']:.2f}x /follow's turn event (p50 {follow['p50']:.1f} ms)", "< 1 s"]]


if __name__ == "__main__":
    print(table(rows(run()), ["scenario", "measured", "relative", "target"]))
