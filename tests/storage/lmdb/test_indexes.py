"""Listing by tag and counting children cost O(limit), kept right by the writer (issue 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

from cxdb.storage import Store
from cxdb.storage.lmdb import contexts
from cxdb.storage.lmdb.env import FORMAT


async def tagged(store: Store, count: int, tag: str) -> list[int]:
    made = await asyncio.gather(*(store.create_context(client_tag=tag) for _ in range(count)))
    return [context.context_id for context in made]


async def test_tag_listing_is_newest_activity_first_with_an_exact_total(store: Store) -> None:
    ids = await tagged(store, 6, "team/a")
    await tagged(store, 3, "team/b")
    await tagged(store, 2, "team/a2")  # a longer tag with the same prefix is another tag
    for context_id in (ids[2], ids[4]):
        await asyncio.sleep(0.003)
        await store.append(context_id, "t", 1, msgpack.packb({"x": 1}))
    found, total = store.list_contexts(3, tag="team/a")
    assert total == 6
    assert [c.context_id for c in found] == [ids[4], ids[2], ids[5]]
    found, total = store.list_contexts(100, tag="team/a")
    assert sorted(c.context_id for c in found) == sorted(ids) and total == 6
    assert store.list_contexts(0, tag="team/a") == ([], 6)
    assert store.check()["ok"]


async def test_tag_listing_loads_only_the_contexts_it_returns(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """O(limit): listing 5 of 2,000 tagged contexts reads 5 context records, where reading every tagged
    context to sort them read 2,000. Counted, not timed."""
    await tagged(store, 2000, "t")
    loaded: list[int] = []
    original = contexts.require

    def counting(txn: Any, dbs: Any, context_id: int, with_meta: bool = True) -> Any:
        loaded.append(context_id)
        return original(txn, dbs, context_id, with_meta)

    monkeypatch.setattr(contexts, "require", counting)
    found, total = store.list_contexts(5, tag="t")
    assert total == 2000 and len(found) == 5
    assert len(loaded) == 5


async def test_children_are_counted_without_loading_them(store: Store) -> None:
    root = await store.create_context()
    turn = (await store.append(root.context_id, "t", 1, msgpack.packb({"x": 1}))).turn
    forks = await asyncio.gather(*(store.create_context(turn.turn_id) for _ in range(300)))
    grandchild = await store.create_context(turn.turn_id)  # forks of root's turn are root's children
    found, total = store.children(root.context_id, limit=5)
    assert total == 301 and [c.context_id for c in found] == [f.context_id for f in forks[:5]]
    ids, count = store.child_ids(root.context_id, 256)
    assert len(ids) == 256 and count == 301
    sub = await store.append(forks[0].context_id, "t", 1, msgpack.packb({"y": 1}))
    deeper = await store.create_context(sub.turn.turn_id)
    found, total = store.children(root.context_id, recursive=True, limit=400)
    assert total == 302 and found[-1].context_id == deeper.context_id
    assert grandchild.context_id in {c.context_id for c in found}
    assert store.check()["ok"]


async def test_a_format_1_store_gains_its_indexes_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Store(path) as store:
        ids = await tagged(store, 4, "old")
        root = await store.create_context()
        turn = (await store.append(root.context_id, "t", 1, msgpack.packb({"x": 1}))).turn
        await store.create_context(turn.turn_id)
        await store.create_context(turn.turn_id)
    env = lmdb.open(str(path), max_dbs=32)  # as format 1 left it: no tagact, ctxtag or counts
    with env.begin(write=True) as txn:
        for name in (b"tagact", b"ctxtag", b"counts"):
            txn.drop(env.open_db(name, txn=txn), delete=True)
        txn.put(b"format", b'{"codec":"%s","format_version":1,"hash":"%s","int_keys":"u64be"}' % (
            FORMAT["codec"].encode(), FORMAT["hash"].encode()), db=env.open_db(b"meta", txn=txn))
    env.close()
    with Store(path) as store:
        found, total = store.list_contexts(10, tag="old")
        assert total == 4 and sorted(c.context_id for c in found) == sorted(ids)
        assert store.children(root.context_id)[1] == 2
        report = store.check()
        assert report["ok"], report


async def test_check_finds_a_broken_index(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Store(path) as store:
        await tagged(store, 2, "x")
    env = lmdb.open(str(path), max_dbs=32)
    with env.begin(write=True) as txn:
        tagact = env.open_db(b"tagact", txn=txn)
        key = next(iter(txn.cursor(db=tagact).iternext(values=False)))
        txn.delete(key, db=tagact)
        counts = env.open_db(b"counts", txn=txn)
        key = next(iter(txn.cursor(db=counts).iternext(values=False)))
        txn.put(key, (7).to_bytes(8, "big"), db=counts)
    env.close()
    with Store(path) as store:
        report = store.check()
    assert not report["ok"]
    assert {p["kind"] for p in report["problems"]} == {"tagact_missing", "index_count_wrong"}
