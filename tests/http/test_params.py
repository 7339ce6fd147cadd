"""Properties of the body checks that run before parsing (issue 11)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxdb.errors import Unprocessable
from cxdb.http.params import _bound_outside_strings, parse_json

# Strings full of the characters the scan counts and skips: quotes, escapes, brackets, commas.
TRICKY = st.text(alphabet='ab,[]{}":\\\n\u00e9', max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False,
                      allow_infinity=False) | TRICKY,
                      lambda inner: st.lists(inner, max_size=6) | st.dictionaries(TRICKY, inner, max_size=6),
                      max_leaves=40)


def count(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(count(item) for item in value)
    if isinstance(value, dict):
        return 1 + sum(count(item) for item in value.values())
    return 1


@settings(max_examples=500, deadline=None)
@given(VALUES, st.sampled_from([None, 2]))
def test_the_byte_scan_never_undercounts_values(value: Any, indent: int | None) -> None:
    raw = json.dumps(value, indent=indent).encode()
    assert _bound_outside_strings(raw) >= count(value)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_a_body_is_refused_for_its_values_exactly_when_it_has_too_many(value: Any) -> None:
    raw = orjson.dumps({"data": value})
    values = count(value) + 1
    limit = 20  # a small body's limit is max_items itself: the density allowance starts at 65,536
    if values <= limit:
        try:
            parse_json(raw, max_depth=1000, max_items=limit)
        except Unprocessable as exc:
            assert "values" not in exc.message, exc.message
    else:  # for compact JSON the scan's bound is exact, so one value too many is refused
        with pytest.raises(Unprocessable, match="values"):
            parse_json(raw, max_depth=1000, max_items=limit)
