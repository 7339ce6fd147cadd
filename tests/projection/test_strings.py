"""string_limit's cut, as a property over random nested values: a cut string is the longest prefix
of whole characters within the limit, every other value is unchanged, and the paths name exactly the
strings cut."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cxdb.projection.strings import Cut, cut_paths, cut_strings

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
VALUES = st.recursive(st.one_of(TEXT, st.binary(max_size=40), st.integers(), st.none(), st.booleans()),
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(st.text(max_size=5), inner, max_size=4)),
                      max_leaves=30)


def expected(value: Any, limit: int, path: str, paths: list[str]) -> Any:
    if isinstance(value, str):
        encoded = value.encode()
        if len(encoded) <= limit:
            return value
        paths.append(path)
        prefix = ""
        for char in value:  # the longest prefix of whole characters that fits
            if len((prefix + char).encode()) > limit:
                return prefix
            prefix += char
        raise AssertionError("unreachable")
    if isinstance(value, list):
        return [expected(item, limit, f"{path}[{index}]", paths) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: expected(item, limit, f"{path}.{key}" if path else key, paths) for key, item in value.items()}
    return value


@given(value=st.dictionaries(st.text(max_size=5), VALUES, max_size=5), limit=st.integers(1, 24))
def test_cut_strings_are_the_longest_whole_prefixes_and_their_paths_are_listed(value: dict[str, Any],
                                                                                limit: int) -> None:
    paths: list[str] = []
    want = expected(value, limit, "", paths)
    got = cut_strings(value, limit)
    assert got == want
    assert cut_paths(got) == paths


def test_a_string_within_the_limit_is_the_same_object_and_bytes_are_never_cut() -> None:
    text = "é" * 10
    assert cut_strings(text, 20) is text
    assert cut_strings(b"\xff" * 100, 1) == b"\xff" * 100
    cut = cut_strings("🙂🙂", 7)
    assert isinstance(cut, Cut) and cut == "🙂"
    assert cut_strings("🙂", 3) == ""  # nothing whole fits: the string is empty, and listed
