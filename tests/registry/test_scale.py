"""Publishing and loading the registry is linear in what it holds (issue 11).

Growth is measured as a ratio between two sizes in the same run, never as a wall-clock bound:
ten times the types must cost about ten times the time, where the quadratic code cost a hundred.
"""

from __future__ import annotations

import time
from typing import Any

from cxdb.registry import Catalog, parse_bundle


def many_types(count: int, bundle_id: str = "big") -> dict[str, Any]:
    fields = {"1": {"name": "a", "type": "string"}, "2": {"name": "b", "type": "u32", "optional": True}}
    return {"registry_version": 1, "bundle_id": bundle_id,
            "types": {f"t{i}": {"versions": {"1": {"fields": fields}}} for i in range(count)}}


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_one_bundle_of_many_types_is_checked_in_linear_time() -> None:
    small, large = parse_bundle(many_types(500)), parse_bundle(many_types(5000))
    ratio = best_of(3, lambda: Catalog().with_bundle(large)) / best_of(3, lambda: Catalog().with_bundle(small))
    assert ratio < 30, ratio  # linear: ~10; the per-type scan of every descriptor gave ~100


def test_many_bundles_load_in_linear_time() -> None:
    def bundles(count: int) -> list[Any]:
        return [parse_bundle(many_types(1, f"b{i}") | {"types": {f"t{i}": many_types(1)["types"]["t0"]}})
                for i in range(count)]

    small, large = bundles(300), bundles(3000)
    ratio = best_of(3, lambda: Catalog.from_bundles(large)) / best_of(3, lambda: Catalog.from_bundles(small))
    assert ratio < 30, ratio


def test_enum_labels_are_checked_in_linear_time() -> None:
    def enum_bundle(count: int) -> dict[str, Any]:
        return {"registry_version": 1, "bundle_id": "e", "enums": {"E": {str(i): f"l{i}" for i in range(count)}}}

    small, large = enum_bundle(4000), enum_bundle(40000)
    ratio = best_of(3, lambda: parse_bundle(large)) / best_of(3, lambda: parse_bundle(small))
    assert ratio < 30, ratio


def test_incremental_catalog_equals_a_full_rebuild() -> None:
    parsed = [parse_bundle(many_types(3, f"b{i}") | {"types": {f"x{i}": many_types(1)["types"]["t0"]}})
              for i in range(20)]
    step = Catalog()
    for item in parsed:
        step = step.with_bundle(item)
    whole = Catalog.from_bundles(parsed)
    assert step.descriptors == whole.descriptors and step.bundle_ids == whole.bundle_ids
    assert step.tags == whole.tags
