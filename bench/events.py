"""Live events: delivery latency across workers, what streams cost appends, and memory per stream.

- Latency: ``cxdb serve --workers 2`` (LMDB, then PostgreSQL in a private cluster when one can be
  started: two gateways that wake each other by LISTEN/NOTIFY), 100 subscribers on ``GET /v1/events`` spread over both
  workers by the kernel, and appends at a fixed rate, each on a new connection so both workers take
  them. For every append and every subscriber: the time from the append's acknowledgement to the
  subscriber's receipt of its event (0 when the event arrived first). Subscribers and the appender
  run in one process of their own.
- Appends with followers: wrk appends (round-robin over 64 contexts) against a server with 100
  streams each following one of those contexts, as events (``?context_id=``) or as rendered turns
  (``/follow``), against the same server with none, rounds interleaved.
- Memory: the server's RSS with 1,000 idle streams open, against none.

Run: ``python -m bench.events`` (wrk must be installed for the second part).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from .common import HERE, cxdb_server, have_wrk, rss_kib, table, wrk
from .http_load import prepare
from .pgcluster import Cluster, NoPostgres

SUBSCRIBERS = 100
MODES = {"filtered": "event streams of one context each (?context_id=)",
         "follow": "followers of one context each (/follow, turns rendered)"}


async def _subscribe(session: aiohttp.ClientSession, url: str, seen: dict[str, list[float]],
                     ready: asyncio.Event, count: list[int]) -> None:
    async with session.get(f"{url}/v1/events", timeout=aiohttp.ClientTimeout(total=None)) as reply:
        count[0] += 1
        if count[0] == SUBSCRIBERS:
            ready.set()
        turn_id = None
        async for line in reply.content:
            text = line.decode()
            if text.startswith("data: ") and '"turn_id"' in text:
                turn_id = text.split('"turn_id":"', 1)[1].split('"', 1)[0]
                seen.setdefault(turn_id, []).append(time.perf_counter())


async def _latency(url: str, rate: float, seconds: float) -> dict[str, float]:
    seen: dict[str, list[float]] = {}
    acked: dict[str, float] = {}
    ready = asyncio.Event()
    count = [0]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(_subscribe(session, url, seen, ready, count)) for _ in range(SUBSCRIBERS)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(0.5)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as writer:
            async with writer.post(f"{url}/v1/contexts/create", json={}) as reply:
                context_id = (await reply.json())["context_id"]
            start = time.perf_counter()
            n = 0
            while time.perf_counter() - start < seconds:
                n += 1
                async with writer.post(f"{url}/v1/contexts/{context_id}/append",
                                       json={"type_id": "t", "type_version": 1, "data": {"n": n}}) as reply:
                    acked[(await reply.json())["turn_id"]] = time.perf_counter()
                await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delays = [max(0.0, received - acked[turn_id]) * 1000
              for turn_id, times in seen.items() if turn_id in acked for received in times]
    missing = sum(SUBSCRIBERS - len(seen.get(turn_id, [])) for turn_id in acked)
    delays.sort()
    return {"appends": float(len(acked)), "deliveries": float(len(delays)), "missing": float(missing),
            "p50_ms": statistics.median(delays), "p99_ms": delays[int(len(delays) * 0.99)],
            "max_ms": delays[-1]}


def _latency_process(url: str, rate: float, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_latency(url, rate, seconds)))


def _in_process(target: Any, *args: Any) -> dict[str, float]:
    queue: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, float] = queue.get(timeout=300)
    proc.join(timeout=60)
    return result


def _stream_path(mode: str, n: int) -> str:
    """``events``: the whole store; ``filtered``: the events of one of the 64 contexts; ``follow``:
    that context's turns, rendered, on ``/follow``."""
    if mode == "follow":
        return f"/v1/contexts/{n % 64 + 1}/follow"
    return f"/v1/events?context_id={n % 64 + 1}" if mode == "filtered" else "/v1/events"


async def _hold(url: str, streams: int, seconds: float, mode: str) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        replies = []
        for n in range(streams):
            replies.append(await session.get(url + _stream_path(mode, n), timeout=aiohttp.ClientTimeout(total=None)))

        async def drain(reply: aiohttp.ClientResponse) -> None:
            # Chunks, not lines: the holder shares the cores with the server, and what a client spends
            # parsing is not the server's cost.
            async for _ in reply.content.iter_any():
                pass

        tasks = [asyncio.create_task(drain(reply)) for reply in replies]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for reply in replies:
            reply.close()


def _hold_process(url: str, streams: int, seconds: float, mode: str = "events") -> multiprocessing.Process:
    proc = multiprocessing.Process(target=lambda: asyncio.run(_hold(url, streams, seconds, mode)))
    proc.start()
    return proc


def _server_pid(port: int) -> int:
    import subprocess

    found = subprocess.run(["pgrep", "-f", f"cxdb serve .*--port {port}"], capture_output=True, text=True)
    return int(found.stdout.split()[0])


def run(seconds: int = 5, rounds: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with cxdb_server(Path(tmp) / "lat", "--workers", "2") as url:
            out["latency"] = _in_process(_latency_process, url, 200.0, float(seconds * 2))
        try:
            cluster = Cluster()
        except NoPostgres:
            cluster = None
        if cluster is not None:
            try:  # two gateways on one database: events reach the other gateway by LISTEN/NOTIFY
                with cxdb_server(cluster.url, "--workers", "2") as url:
                    out["latency_pg"] = _in_process(_latency_process, url, 200.0, float(seconds * 2))
            finally:
                cluster.remove()
        if have_wrk():
            with cxdb_server(Path(tmp) / "load") as url:
                prepare(url)
                figures: dict[str, list[float]] = {"none": [], **{mode: [] for mode in MODES}}
                for _ in range(rounds):
                    figures["none"].append(wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua",
                                               seconds=seconds)["rps"])
                    for mode in MODES:
                        holder = _hold_process(url, SUBSCRIBERS, seconds + 4, mode)
                        time.sleep(2)
                        figures[mode].append(wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua",
                                                 seconds=seconds)["rps"])
                        holder.join(timeout=60)
                out["appends_without"] = statistics.median(figures["none"])
                for mode in MODES:
                    out[f"appends_{mode}"] = statistics.median(figures[mode])
                    out[f"appends_{mode}_ratio"] = out[f"appends_{mode}"] / out["appends_without"]
        with cxdb_server(Path(tmp) / "rss") as url:
            port = int(url.rsplit(":", 1)[1])
            pid = _server_pid(port)
            idle = rss_kib(pid)["VmRSS"]
            holder = _hold_process(url, 1000, 8)
            time.sleep(6)
            held = rss_kib(pid)["VmRSS"]
            holder.join(timeout=60)
            out["rss_idle_kib"] = idle
            out["rss_1000_streams_kib"] = held
    return out


def rows(out: dict[str, Any]) -> list[list[str]]:
    found = []
    for key, where in (("latency", "2 LMDB workers"), ("latency_pg", "2 PostgreSQL gateways")):
        if key in out:
            lat = out[key]
            found.append([f"event delivery, append ack to receipt, {SUBSCRIBERS} subscribers, {where}",
                          f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
                          f"max {lat['max_ms']:.1f} ms; {lat['deliveries']:,.0f} deliveries, "
                          f"{lat['missing']:.0f} missing", "p99 < 50 ms"])
    for mode in MODES:
        if f"appends_{mode}" in out:
            found.append([f"durable appends with {SUBSCRIBERS} {MODES[mode]}", f"{out[f'appends_{mode}']:,.0f}/s",
                          f"{out[f'appends_{mode}_ratio']:.2f}x without ({out['appends_without']:,.0f}/s)",
                          ">= 0.9x"])
    found.append(["server RSS with 1,000 idle event streams", f"{out['rss_1000_streams_kib'] / 1024:.1f} MiB",
                   f"{out['rss_idle_kib'] / 1024:.1f} MiB with none: "
                   f"{(out['rss_1000_streams_kib'] - out['rss_idle_kib']) / 1000:.1f} KiB a stream", "reported"])
    return found


if __name__ == "__main__":
    print(table(rows(run()), ["scenario", "measured", "relative", "target"]))
