"""The event log, on each backend: one event per change, in the change's transaction, with sequences
strictly increasing in commit order; read back with what it names; pruned from the oldest end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import lmdb
import msgpack
import pytest

from cxdb.errors import Conflict, NotFound
from cxdb.storage import Backend
from cxdb.storage.lmdb.env import FORMAT


def raw(n: int) -> bytes:
    return msgpack.packb({"n": n})  # type: ignore[no-any-return]


async def test_each_change_is_one_event_in_order_with_what_it_names(opened: Backend) -> None:
    assert await opened.event_bounds() == (0, 0) and await opened.events(0, 10) == []
    root = await opened.create_context(client_tag="x")
    first = (await opened.append(root.context_id, "t", 1, raw(1), idempotency_key="k")).turn
    second = (await opened.append(root.context_id, "t", 2, raw(2))).turn
    fork = await opened.create_context(first.turn_id)
    assert (await opened.append(root.context_id, "t", 1, raw(1), idempotency_key="k")).replayed  # no event
    with pytest.raises(Conflict):
        await opened.append(root.context_id, "t", 1, raw(3), parent_turn_id=10**9)  # no event
    with pytest.raises(NotFound):
        await opened.append(10**9, "t", 1, raw(3))  # no event
    stored, created = await opened.publish_bundle("b1", b'{"registry_version":1,"bundle_id":"b1"}', 0)
    assert created
    await opened.publish_bundle("b1", b'{"registry_version":1,"bundle_id":"b1"}', 1)  # a repeat: no event

    events = await opened.events(0, 100)
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert [e.kind for e in events] == ["context_created", "turn_appended", "turn_appended", "context_created",
                                        "registry_published"]
    assert events[0].context is not None and events[0].context.context_id == root.context_id
    assert events[0].context.client_tag == "x" and (events[0].head_turn_id, events[0].head_depth) == (0, 0)
    assert events[1].turn == first and events[2].turn == second
    assert events[3].context is not None and events[3].context.context_id == fork.context_id
    assert (events[3].head_turn_id, events[3].head_depth) == (first.turn_id, 1)
    assert events[3].context.lineage.parent_context_id == root.context_id
    assert events[4].bundle_id == "b1"
    assert all(e.created_at_ms > 0 for e in events)
    assert [e.sequence for e in await opened.events(2, 2)] == [3, 4]
    assert await opened.events(5, 10) == [] and await opened.events(2**64 - 1, 10) == []
    assert await opened.event_bounds() == (1, 5)


async def test_concurrent_appends_get_consecutive_events_in_commit_order(opened: Backend) -> None:
    contexts = [await opened.create_context() for _ in range(4)]
    results = await asyncio.gather(*(opened.append(contexts[n % 4].context_id, "t", 1, raw(n)) for n in range(64)))
    events = (await opened.events(4, 1000))
    assert [e.sequence for e in events] == list(range(5, 69))
    turns = [e.turn for e in events]
    assert all(t is not None for t in turns)
    assert [t.turn_id for t in turns] == sorted(r.turn.turn_id for r in results)  # type: ignore[union-attr]


async def test_pruning_takes_the_oldest_in_bounded_steps_and_keeps_the_sequence(opened: Backend) -> None:
    context = await opened.create_context()
    for n in range(5):
        await opened.append(context.context_id, "t", 1, raw(n))
    assert await opened.prune_events(0, 10) == 0  # nothing is older than the epoch
    assert await opened.prune_events(2**62, 2) == 2
    assert await opened.event_bounds() == (3, 6)
    assert [e.sequence for e in await opened.events(0, 10)] == [3, 4, 5, 6]
    assert await opened.prune_events(2**62, 100) == 4
    assert await opened.event_bounds() == (0, 6)
    await opened.append(context.context_id, "t", 1, raw(9))
    assert await opened.event_bounds() == (7, 7)


async def test_a_format_2_lmdb_store_gains_an_empty_event_log(tmp_path: Path) -> None:
    from cxdb.storage import Store

    path = tmp_path / "old"
    with Store(path) as store:
        context = await store.create_context()
        await store.append(context.context_id, "t", 1, raw(1))
    env = lmdb.open(str(path), max_dbs=32)  # as format 2 left it: no events, no next_event counter
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"events", txn=txn), delete=True)
        meta = env.open_db(b"meta", txn=txn)
        txn.delete(b"c:next_event", db=meta)
        txn.put(b"format", b'{"codec":"%s","format_version":2,"hash":"%s","int_keys":"u64be"}' % (
            FORMAT["codec"].encode(), FORMAT["hash"].encode()), db=meta)
    env.close()
    with pytest.raises(Exception, match="older format"):
        Store(path, readonly=True)
    with Store(path) as store:
        assert store.event_bounds() == (0, 0)
        await store.append(context.context_id, "t", 1, raw(2))
        assert [e.sequence for e in store.events(0, 10)] == [1]
        assert store.check()["ok"]


async def test_a_format_3_lmdb_store_gains_an_empty_head_history(tmp_path: Path) -> None:
    from cxdb.storage import Store

    path = tmp_path / "old"
    with Store(path) as store:
        context = await store.create_context()
        first = await store.append(context.context_id, "t", 1, raw(1))
    env = lmdb.open(str(path), max_dbs=32)  # as format 3 left it: no head history
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"heads", txn=txn), delete=True)
        txn.put(b"format", b'{"codec":"%s","format_version":3,"hash":"%s","int_keys":"u64be"}' % (
            FORMAT["codec"].encode(), FORMAT["hash"].encode()), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(Exception, match="older format"):
        Store(path, readonly=True)
    with Store(path) as store:
        assert store.head_history(context.context_id, 10, None) == ([], None)
        moved = await store.append(context.context_id, "t", 1, raw(2), parent_turn_id=0)
        assert moved.replaced_head_turn_id == first.turn.turn_id
        assert [e.head_turn_id for e in store.head_history(context.context_id, 10, None)[0]] == [first.turn.turn_id]
        assert store.check()["ok"]
