"""Head history in the store, on each backend: `check` accepts a healthy history and reports an entry
that names a missing turn or the wrong depth."""

from __future__ import annotations

import struct

import lmdb
import msgpack

from cxdb.config import Settings
from cxdb.storage import check, open_backend


async def damage(store_url: str, context_id: int, replaced_by: int) -> None:
    if store_url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute("UPDATE head_history SET head_depth = 99 WHERE context_id = $1", context_id)
            await conn.execute("INSERT INTO head_history VALUES ($1, $2, 424242, 1, 0)", context_id, replaced_by + 1)
        finally:
            await conn.close()
        return
    env = lmdb.open(store_url, max_dbs=32)
    try:
        with env.begin(write=True) as txn:
            heads = env.open_db(b"heads", txn=txn)
            txn.put(struct.pack(">QQ", context_id, replaced_by + 1), struct.pack(">QQQ", 424242, 1, 0), db=heads)
    finally:
        env.close()


async def test_check_reports_a_head_history_entry_without_its_turn(store_url: str) -> None:
    backend = open_backend(Settings(store=store_url))
    await backend.start()
    try:
        context = await backend.create_context()
        first = await backend.append(context.context_id, "t", 1, msgpack.packb({"n": 1}))
        await backend.append(context.context_id, "t", 1, msgpack.packb({"n": 2}))
        moved = await backend.append(context.context_id, "t", 1, msgpack.packb({"n": 3}),
                                     parent_turn_id=first.turn.turn_id)
        assert moved.replaced_head_turn_id is not None
        assert (await backend.check())["ok"]
    finally:
        await backend.close()
    await damage(store_url, context.context_id, moved.turn.turn_id)
    report = await check(Settings(store=store_url))
    assert not report["ok"]
    assert [p["kind"] for p in report["problems"]] == ["head_history_wrong"] * report["problem_count"]
    assert report["problem_count"] == (2 if store_url.startswith("postgresql") else 1)


async def test_a_replaced_heads_chain_through_another_contexts_turns_is_this_contexts(store_url: str) -> None:
    # Found by the model-based test on PostgreSQL: a turn appended with a parent in another context, then
    # replaced; that parent is on a chain of this context's (a replaced head's), so a cursor may name it.
    backend = open_backend(Settings(store=store_url))
    await backend.start()
    try:
        one = await backend.create_context()
        elsewhere = (await backend.append(one.context_id, "t", 1, msgpack.packb({"n": 1}))).turn
        two = await backend.create_context()
        mine = (await backend.append(two.context_id, "t", 1, msgpack.packb({"n": 2}), elsewhere.turn_id)).turn
        moved = await backend.append(two.context_id, "t", 1, msgpack.packb({"n": 3}), 0)
        assert moved.replaced_head_turn_id == mine.turn_id
        assert await backend.turn_in_context(two.context_id, elsewhere.turn_id) == elsewhere
        start = await backend.page_start(two.context_id, elsewhere.turn_id)
        assert start.start == 0  # the page before the first turn of that chain is empty
        assert await backend.turn_in_context(two.context_id, moved.turn.turn_id + 100) is None
        third = await backend.create_context()
        assert await backend.turn_in_context(third.context_id, elsewhere.turn_id) is None
    finally:
        await backend.close()
