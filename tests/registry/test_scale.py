"""The catalog built a bundle at a time equals the one built from all of them at once (issue 11).

How checking and loading grow with the registry's size is measured in bench/registry.py, as ratios.
"""

from __future__ import annotations

from typing import Any

from cxdb.registry import Catalog, parse_bundle


def many_types(count: int, bundle_id: str = "big") -> dict[str, Any]:
    fields = {"1": {"name": "a", "type": "string"}, "2": {"name": "b", "type": "u32", "optional": True}}
    return {"registry_version": 1, "bundle_id": bundle_id,
            "types": {f"t{i}": {"versions": {"1": {"fields": fields}}} for i in range(count)}}


def test_incremental_catalog_equals_a_full_rebuild() -> None:
    parsed = [parse_bundle(many_types(3, f"b{i}") | {"types": {f"x{i}": many_types(1)["types"]["t0"]}})
              for i in range(20)]
    step = Catalog()
    for item in parsed:
        step = step.with_bundle(item)
    whole = Catalog.from_bundles(parsed)
    assert step.descriptors == whole.descriptors and step.bundle_ids == whole.bundle_ids
    assert step.tags == whole.tags
