"""How checking and loading the registry grows with its size, and start-up with a big registry.

Each figure is a ratio between two sizes measured in the same run (ten times the types, bundles or
enum labels): linear work gives about 10×, the quadratic checks issue 11 removed gave about 100×.
Start-up is a cxdb service opening a store that holds one bundle of 10,000 types.

    python -m bench.registry
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxdb.config import Settings
from cxdb.registry import Catalog, parse_bundle
from cxdb.service import Service

from .common import table


def many_types(count: int, bundle_id: str = "big") -> dict[str, Any]:
    fields = {"1": {"name": "a", "type": "string"}, "2": {"name": "b", "type": "u32", "optional": True}}
    return {"registry_version": 1, "bundle_id": bundle_id,
            "types": {f"t{i}": {"versions": {"1": {"fields": fields}}} for i in range(count)}}


def _best(fn: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _bundles(count: int) -> list[Any]:
    return [parse_bundle(many_types(1, f"b{i}") | {"types": {f"t{i}": many_types(1)["types"]["t0"]}})
            for i in range(count)]


def _enums(count: int) -> dict[str, Any]:
    return {"registry_version": 1, "bundle_id": "e", "enums": {"E": {str(i): f"l{i}" for i in range(count)}}}


async def _start_up(types: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(store=str(Path(tmp) / "data"))
        async with Service(settings) as service:
            await service.publish_bundle("big", many_types(types))
        start = time.perf_counter()
        async with Service(settings):
            return time.perf_counter() - start


def run() -> dict[str, float]:
    small, large = parse_bundle(many_types(1000)), parse_bundle(many_types(10_000))
    few, many = _bundles(300), _bundles(3000)
    return {
        "check_10k_types_s": _best(lambda: Catalog().with_bundle(large)),
        "check_types_growth": _best(lambda: Catalog().with_bundle(large)) / _best(lambda: Catalog().with_bundle(small)),
        "load_bundles_growth": _best(lambda: Catalog.from_bundles(many)) / _best(lambda: Catalog.from_bundles(few)),
        "enum_labels_growth": _best(lambda: parse_bundle(_enums(40_000))) / _best(lambda: parse_bundle(_enums(4000))),
        "start_up_10k_types_s": asyncio.run(_start_up(10_000)),
    }


def rows(results: dict[str, float]) -> list[list[str]]:
    return [
        ["registry: check one bundle, 10,000 types vs 1,000", f"{results['check_10k_types_s'] * 1000:.0f} ms",
         f"{results['check_types_growth']:.1f}x for 10x the types", "linear: ~10x"],
        ["registry: load 3,000 bundles vs 300", f"{results['load_bundles_growth']:.1f}x", "for 10x the bundles",
         "linear: ~10x"],
        ["registry: enum of 40,000 labels vs 4,000", f"{results['enum_labels_growth']:.1f}x", "for 10x the labels",
         "linear: ~10x"],
        ["start-up with a registry of 10,000 types", f"{results['start_up_10k_types_s']:.2f} s", "-", "< 1 s"],
    ]


def main() -> None:
    print(table(rows(run()), ["scenario", "measured", "relative", "target"]))


if __name__ == "__main__":
    main()
