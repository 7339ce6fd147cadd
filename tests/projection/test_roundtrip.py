"""Hypothesis: JSON -> tagged msgpack -> typed JSON is the identity, for random descriptors.

Each example publishes a random bundle (nested types, arrays, maps, enums,
bytes, integer edge values) into a real store, appends a random conforming
value, reads it back typed with ``u64_format=number`` and ``time_render=unix_ms``
and checks the stored blob uses integer tags only.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb.config import Settings
from cxdb.descriptor import INT_RANGES
from cxdb.projection import RenderOptions
from cxdb.service import Service

SCALAR_KINDS = ["bool", "string", "bytes", "f64", "f32", *INT_RANGES]
_ids = itertools.count()

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def field_specs(draw: st.DrawFn, earlier: list[str], enum_id: str) -> dict[str, Any]:
    choices = ["scalar", "scalar", "enum", "time", "array", "map", "generic_map"]
    if earlier:
        choices += ["nested", "nested_array"]
    shape = draw(st.sampled_from(choices))
    optional = draw(st.booleans())
    spec: dict[str, Any]
    if shape == "scalar":
        spec = {"type": draw(st.sampled_from(SCALAR_KINDS))}
    elif shape == "enum":
        spec = {"type": draw(st.sampled_from(["u8", "u32", "i64"])), "enum": enum_id}
    elif shape == "time":
        semantic = draw(st.sampled_from(["unix_ms", "unix_sec"]))
        spec = {"type": draw(st.sampled_from(["u64", "i64"])), "semantic": semantic}
    elif shape == "array":
        spec = {"type": "array", "items": draw(st.sampled_from(SCALAR_KINDS))}
    elif shape == "map":
        spec = {"type": "map", "value_type": draw(st.sampled_from(SCALAR_KINDS))}
    elif shape == "generic_map":
        spec = {"type": "map"}
    elif shape == "nested":
        spec = {"type": "nested", "nested": draw(st.sampled_from(earlier))}
    else:
        spec = {"type": "array", "items": draw(st.sampled_from(earlier))}
    if optional:
        spec["optional"] = True
    return spec


@st.composite
def bundles(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    n = next(_ids)
    enum_id = f"E{n}"
    labels = draw(st.lists(st.integers(0, 200), min_size=1, max_size=5, unique=True))
    type_ids: list[str] = []
    types: dict[str, Any] = {}
    for k in range(draw(st.integers(1, 3))):
        type_id = f"T{n}.{k}"
        tags = draw(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=6, unique=True))
        fields = {str(tag): {"name": f"f{tag}", **draw(field_specs(type_ids, enum_id))} for tag in tags}
        types[type_id] = {"versions": {"1": {"fields": fields}}}
        type_ids.append(type_id)
    bundle = {"registry_version": 1, "bundle_id": f"b{n}", "types": types,
              "enums": {enum_id: {str(v): f"L{v}" for v in labels}}}
    return bundle, type_ids[-1]


def scalar_values(kind: str) -> st.SearchStrategy[Any]:
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.one_of(st.sampled_from([low, high, 0]), st.integers(low, high))
    return {
        "bool": st.booleans(),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
        "f64": st.floats(allow_nan=False, allow_infinity=False),
        "f32": st.floats(allow_nan=False, allow_infinity=False, width=32),
    }[kind]


def values_for(bundle: dict[str, Any], type_id: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = bundle["types"][type_id]["versions"]["1"]["fields"]
    enum_labels = list(next(iter(bundle["enums"].values())).values())
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for spec in fields.values():
        kind = spec["type"]
        if "enum" in spec:
            strategy: st.SearchStrategy[Any] = st.sampled_from(enum_labels)
        elif "semantic" in spec:
            strategy = st.integers(0, 2**53 - 1)
        elif kind == "array":
            items = spec["items"]
            inner = scalar_values(items) if items in SCALAR_KINDS else values_for(bundle, items)
            strategy = st.lists(inner, max_size=3)
        elif kind == "map":
            inner = scalar_values(spec["value_type"]) if "value_type" in spec else json_any
            strategy = st.dictionaries(st.text(max_size=5), inner, max_size=3)
        elif kind == "nested":
            strategy = values_for(bundle, spec["nested"])
        else:
            strategy = scalar_values(kind)
        (optional if spec.get("optional") else required)[spec["name"]] = strategy
    return st.fixed_dictionaries(required, optional=optional)  # type: ignore[arg-type]


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], str, dict[str, Any]]:
    bundle, type_id = draw(bundles())
    return bundle, type_id, draw(values_for(bundle, type_id))


def tags_are_integers(value: Any, bundle: dict[str, Any], type_id: str) -> bool:
    fields = bundle["types"][type_id]["versions"]["1"]["fields"]
    if not isinstance(value, dict) or not all(isinstance(k, int) for k in value):
        return False
    for tag, item in value.items():
        spec = fields[str(tag)]
        if spec["type"] == "nested" and not tags_are_integers(item, bundle, spec["nested"]):
            return False
        if spec["type"] == "array" and spec["items"] in bundle["types"]:
            if not all(tags_are_integers(element, bundle, spec["items"]) for element in item):
                return False
    return True


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    service = Service(Settings(store=str(tmp_path_factory.mktemp("roundtrip") / "data")))
    loop.run_until_complete(service.start())
    yield service, loop
    loop.run_until_complete(service.close())
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_typed_round_trip(shared: tuple[Service, asyncio.AbstractEventLoop],
                          case: tuple[dict[str, Any], str, dict[str, Any]]) -> None:
    service, loop = shared
    bundle, type_id, value = case
    assert loop.run_until_complete(service.publish_bundle(bundle["bundle_id"], bundle)).created
    context_id = int(loop.run_until_complete(service.create_context())["context_id"])
    appended, _ = loop.run_until_complete(service.append(context_id, type_id, 1, value))
    page = loop.run_until_complete(service.get_turns(context_id, options=RenderOptions(u64_format="number",
                                                                                       time_render="unix_ms")))
    turn = page["turns"][0]
    assert turn["decoded_as"] == {"type_id": type_id, "type_version": 1}
    assert turn["data"] == value
    raw = loop.run_until_complete(service.get_blob(bytes.fromhex(appended["content_hash"])))
    stored = msgpack.unpackb(raw, strict_map_key=False)
    assert tags_are_integers(stored, bundle, type_id)
