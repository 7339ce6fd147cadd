"""HTTP load with wrk: durable appends and a typed page of 64 turns, against a bare aiohttp baseline.

Both servers run in the same session, measured A/B interleaved, and every cxdb figure is
reported as a ratio of the baseline's, because the machine's speed drifts.
"""

from __future__ import annotations

import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from .common import HERE, baseline_server, cxdb_server, median, wrk

BUNDLE = {
    "registry_version": 1,
    "bundle_id": "bench-1",
    "types": {"bench.Message": {"versions": {"1": {"fields": {
        "1": {"name": "role", "type": "u8", "enum": "bench.Role"},
        "2": {"name": "text", "type": "string"},
        "3": {"name": "timestamp", "type": "u64", "semantic": "unix_ms"}}}}}},
    "enums": {"bench.Role": {"1": "system", "2": "user", "3": "assistant"}},
}


def call(url: str, method: str = "GET", body: Any = None) -> bytes:
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback only
        return response.read()  # type: ignore[no-any-return]


def prepare(url: str, contexts: int = 64, turns: int = 80) -> bytes:
    """Publish the bench bundle, create contexts, fill context 1; returns the page bytes."""
    call(f"{url}/v1/registry/bundles/bench-1", "PUT", BUNDLE)
    for _ in range(contexts):
        call(f"{url}/v1/contexts/create", "POST", {"base_turn_id": "0"})
    for i in range(turns):
        call(f"{url}/v1/contexts/1/append", "POST", {
            "type_id": "bench.Message", "type_version": 1,
            "data": {"role": "assistant" if i % 2 else "user", "text": f"turn {i} " + "lorem ipsum " * 20,
                     "timestamp": 1706615000000 + i}})
    return call(f"{url}/v1/contexts/1/turns?limit=64")


def run(seconds: int = 5, rounds: int = 3, workers: int = 1) -> dict[str, float]:
    results: dict[str, list[float]] = {k: [] for k in (
        "base_post", "cxdb_post", "base_get", "cxdb_get", "cxdb_post_p99", "cxdb_get_p99", "non2xx")}
    with tempfile.TemporaryDirectory() as tmp:
        extra = ("--workers", str(workers)) if workers > 1 else ()
        with cxdb_server(Path(tmp) / "data", *extra) as url:
            page = prepare(url)
            page_file = Path(tmp) / "page.json"
            page_file.write_bytes(page)
            with baseline_server(page_file) as base:
                for _ in range(rounds):
                    results["base_post"].append(wrk(f"{base}/v1/contexts/1/append", HERE / "append.lua",
                                                    seconds=seconds)["rps"])
                    post = wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua", seconds=seconds)
                    results["cxdb_post"].append(post["rps"])
                    results["cxdb_post_p99"].append(post["p99_ms"])
                    results["base_get"].append(wrk(f"{base}/v1/contexts/1/turns?limit=64", seconds=seconds)["rps"])
                    get = wrk(f"{url}/v1/contexts/1/turns?limit=64", seconds=seconds)
                    results["cxdb_get"].append(get["rps"])
                    results["cxdb_get_p99"].append(get["p99_ms"])
                    results["non2xx"].append(post["non2xx"] + get["non2xx"])
            stats = orjson.loads(call(f"{url}/v1/stats"))
    out = {key: median(values) for key, values in results.items()}
    out["non2xx"] = sum(results["non2xx"])
    out["post_ratio"] = out["cxdb_post"] / out["base_post"]
    out["get_ratio"] = out["cxdb_get"] / out["base_get"]
    out["turns_stored"] = float(stats["turns"])
    out["page_bytes"] = float(len(page))
    return out


if __name__ == "__main__":
    for key, value in run(seconds=4, rounds=2).items():
        print(f"{key:>16}: {value:,.2f}")
