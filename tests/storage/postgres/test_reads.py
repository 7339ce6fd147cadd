"""Coalesced context reads on PostgreSQL: many at once, each answered with its own row, none stale."""

from __future__ import annotations

import asyncio

import pytest

from cxdb.errors import NotFound, StoreClosed
from cxdb.storage.postgres import PostgresBackend


async def test_concurrent_reads_each_get_their_own_context_and_see_every_acknowledged_append(
        postgres_url: str) -> None:
    backend = PostgresBackend(postgres_url, pool_size=2, max_batch=64)
    await backend.start()
    try:
        contexts = [await backend.create_context(client_tag=f"t{n}") for n in range(40)]
        ids = [c.context_id for c in contexts]
        heads = await asyncio.gather(*(backend.append(cid, "t", 1, bytes([0x90 + n % 16])) for n, cid in
                                       enumerate(ids * 3)))
        newest = {}
        for result in heads:
            newest[result.turn.context_id] = max(newest.get(result.turn.context_id, 0), result.turn.depth)
        reads = await asyncio.gather(*(backend.page_start(cid) for cid in ids * 5),
                                     *(backend.get_context(cid) for cid in ids), return_exceptions=True)
        starts, records = reads[:len(ids) * 5], reads[len(ids) * 5:]
        for cid, start in zip(ids * 5, starts, strict=True):
            assert not isinstance(start, BaseException)
            assert start.context.context_id == cid and start.context.head_depth == newest[cid] == 3
            assert start.start == start.context.head_turn_id and start.registry_generation == 0
        assert [r.client_tag for r in records] == [f"t{n}" for n in range(40)]  # type: ignore[union-attr]
        missing = await asyncio.gather(backend.get_context(10**6), backend.page_start(2**63 + 5),
                                       backend.get_context(ids[0]), return_exceptions=True)
        assert isinstance(missing[0], NotFound) and isinstance(missing[1], NotFound)
        assert not isinstance(missing[2], BaseException) and missing[2].context_id == ids[0]
        # A read sent after an append was acknowledged sees it, however many reads are coalesced.
        for cid in ids[:5]:
            appended = await backend.append(cid, "t", 1, b"\xc0")
            assert (await backend.page_start(cid)).context.head_turn_id == appended.turn.turn_id
    finally:
        await backend.close()
    with pytest.raises(StoreClosed):
        await backend.get_context(ids[0])
