"""Typed encoding: a value that fits comes out in tag order at every level, and one that does not is
Unprocessable naming the exact path of the field, however deep (the path is built only then)."""

from __future__ import annotations

from typing import Any

import pytest

from cxdb.descriptor import Descriptor, TypeRef
from cxdb.errors import Unprocessable
from cxdb.projection import encode_typed
from cxdb.registry import Catalog, parse_bundle

BUNDLE = {
    "registry_version": 1,
    "bundle_id": "encode-1",
    "types": {
        "t.Call": {"versions": {"1": {"fields": {
            "2": {"name": "name", "type": "string"},
            "1": {"name": "id", "type": "string"},
            "3": {"name": "args", "type": "map", "value_type": "i32", "optional": True}}}}},
        "t.Msg": {"versions": {"1": {"fields": {
            "9": {"name": "text", "type": "string"},
            "1": {"name": "role", "type": "u8", "enum": "t.Role"},
            "4": {"name": "calls", "type": "array", "items": "t.Call", "optional": True},
            "3": {"name": "tags", "type": "array", "items": "string", "optional": True},
            "5": {"name": "n", "type": "u64", "optional": True},
            "6": {"name": "meta", "type": "map", "optional": True}}}}},
    },
    "enums": {"t.Role": {"1": "user", "2": "assistant"}},
}
CATALOG = Catalog.from_bundles([parse_bundle(BUNDLE)])


def lookup(ref: TypeRef) -> Descriptor | None:
    return CATALOG.descriptor(ref.type_id, ref.version)


def encode(value: Any) -> dict[int, Any]:
    descriptor = CATALOG.descriptor("t.Msg", 1)
    assert descriptor is not None
    return encode_typed(value, descriptor, lookup)


def test_a_value_that_fits_comes_out_in_tag_order_at_every_level() -> None:
    out = encode({"text": "hi", "calls": [{"args": {"b": 2, "a": 1}, "name": "f", "id": "c1"}],
                  "role": "assistant", "n": "18446744073709551615", "tags": ["x"], "meta": {"k": [1, {"z": None}]}})
    assert list(out) == [1, 3, 4, 5, 6, 9]
    assert out[1] == 2 and out[5] == 2**64 - 1 and out[6] == {"k": [1, {"z": None}]}
    assert list(out[4][0]) == [1, 2, 3] and out[4][0][3] == {"b": 2, "a": 1}


def test_null_is_absent() -> None:
    assert encode({"text": "hi", "role": 1, "n": None, "calls": None}) == {1: 1, 9: "hi"}


@pytest.mark.parametrize(("value", "path", "message"), [
    ([1], "data", "must be an object"),
    ({"text": "hi", "role": 1, "extra": 1}, "extra", "unknown field"),
    ({"role": 1}, "text", "required field is missing"),
    ({"text": "hi", "role": "admin"}, "role", "unknown label"),
    ({"text": "hi", "role": 300}, "role", "out of range for u8"),
    ({"text": 5, "role": 1}, "text", "must be a string"),
    ({"text": "hi", "role": 1, "n": -1}, "n", "out of range for u64"),
    ({"text": "hi", "role": 1, "tags": ["a", 2]}, "tags[1]", "must be a string"),
    ({"text": "hi", "role": 1, "tags": "a"}, "tags", "must be an array"),
    ({"text": "hi", "role": 1, "calls": [{"id": "a", "name": "f"}, {"id": "b"}]}, "calls[1].name",
     "required field is missing"),
    ({"text": "hi", "role": 1, "calls": [{"id": "a", "name": "f", "args": {"q": "x"}}]}, "calls[0].args.q",
     "must be an integer"),
    ({"text": "hi", "role": 1, "calls": [{"id": "a", "name": "f", "more": 1}]}, "calls[0].more", "unknown field"),
    ({"text": "hi", "role": 1, "calls": ["f"]}, "calls[0]", "must be an object"),
    ({"text": "hi", "role": 1, "meta": []}, "meta", "must be an object"),
])
def test_a_misfit_names_its_path(value: Any, path: str, message: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        encode(value)
    assert caught.value.details["field"] == path
    assert caught.value.message.startswith(f"{path}: {message}")
