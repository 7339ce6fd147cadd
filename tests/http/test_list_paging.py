"""Paging through the context list with next_before: every context exactly once, newest activity first,
whatever the page size, for all contexts, one tag, and a tag prefix; on both backends."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb import BadRequest, Client
from tests.conftest import BACKENDS, LiveServer, fresh_store

WORLDS = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_store(str(request.param), tmp_path_factory.mktemp("paging")) as url:
        live = LiveServer(url)
        try:
            yield live
        finally:
            live.stop()


def _pages(client: Client, limit: int, **query: Any) -> tuple[list[str], set[int]]:
    seen: list[str] = []
    totals = set()
    before = None
    for _ in range(200):
        page = client.list_contexts(limit=limit, before=before, **query)
        totals.add(page["total"])
        seen.extend(context["context_id"] for context in page["contexts"])
        before = page["next_before"]
        if before is None:
            return seen, totals
        assert len(page["contexts"]) == limit
    raise AssertionError("paging did not end")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tags=st.lists(st.sampled_from(["a", "ab", "b", None]), min_size=1, max_size=14),
       touches=st.lists(st.integers(0, 13), max_size=10), limit=st.integers(1, 5))
def test_pages_cover_the_list_once_in_order(server: LiveServer, tags: list[str | None], touches: list[int],
                                            limit: int) -> None:
    world = f"w{next(WORLDS)}-"
    with Client(server.url) as client:
        made = [str(client.create_context(client_tag=None if tag is None else world + tag).context_id)
                for tag in tags]
        for index in touches:  # appends move contexts to the front
            client.append_turn(made[index % len(made)], type_id="t", type_version=1, data={})
        for query in ({"tag_prefix": world}, {"tag": world + "a"}, {"tag_prefix": world + "a"}):
            everything = client.list_contexts(limit=10_000, **query)
            assert everything["next_before"] is None
            seen, totals = _pages(client, limit, **query)
            assert seen == [context["context_id"] for context in everything["contexts"]], query
            assert totals == {everything["total"]} and len(seen) == everything["total"]
        seen, _ = _pages(client, max(limit, 3))  # the whole store, other examples' contexts included
        assert len(seen) == len(set(seen)) and set(made) <= set(seen)


def test_a_bad_cursor_is_400(server: LiveServer) -> None:
    with Client(server.url) as client:
        for bad in ("x", "1", "1.", ".1", "1.2.3", "-1.2", str(1 << 64) + ".1"):
            with pytest.raises(BadRequest) as refused:
                client.list_contexts(before=bad)
            assert refused.value.details["parameter"] == "before"
        assert client.list_contexts(before=f"{(1 << 64) - 1}.{(1 << 64) - 1}")["contexts"] is not None
