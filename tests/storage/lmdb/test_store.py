"""The store against a real LMDB in tmp_path."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import lmdb
import msgpack
import pytest

from cxdb.codec import BlobCodec, content_hash
from cxdb.errors import Conflict, FormatMismatch, NotFound, StoreClosed, Unprocessable
from cxdb.storage import Store


def payload(i: int, size: int = 40) -> bytes:
    return msgpack.packb({"i": i, "text": "x" * size})


async def test_create_append_page(store: Store) -> None:
    context = await store.create_context()
    assert (context.head_turn_id, context.head_depth) == (0, 0)
    ids = []
    for i in range(10):
        result = await store.append(context.context_id, "t", 1, payload(i))
        assert not result.replayed
        assert result.turn.depth == i + 1
        ids.append(result.turn.turn_id)
    assert ids == sorted(ids) and len(set(ids)) == 10
    page = store.page(context.context_id, 4)
    assert [t.turn_id for t in page.turns] == ids[-4:]
    assert page.next_before_turn_id == ids[-4]
    page = store.page(context.context_id, 4, page.next_before_turn_id)
    assert [t.turn_id for t in page.turns] == ids[2:6]
    page = store.page(context.context_id, 4, page.next_before_turn_id)
    assert [t.turn_id for t in page.turns] == ids[:2]
    assert page.next_before_turn_id is None
    assert store.page(context.context_id, 0).turns == []
    assert store.get_context(context.context_id).head_turn_id == ids[-1]


async def test_blob_roundtrip_and_dedup(store: Store) -> None:
    context = await store.create_context()
    big = msgpack.packb({"text": "hello world " * 100})
    first = await store.append(context.context_id, "t", 1, big)
    second = await store.append(context.context_id, "t", 1, big)
    assert first.turn.content_hash == second.turn.content_hash == content_hash(big)
    assert first.turn.compression == 1
    assert store.get_blob(first.turn.content_hash) == big
    small = msgpack.packb({"a": 1})
    tiny = await store.append(context.context_id, "t", 1, small)
    assert tiny.turn.compression == 0
    assert store.get_blob(tiny.turn.content_hash) == small
    stats = store.stats()
    assert (stats.blobs, stats.turns, stats.dedup_hits, stats.dedup_misses) == (2, 3, 1, 2)
    assert stats.blob_stored_bytes < stats.blob_raw_bytes
    with pytest.raises(NotFound):
        store.get_blob(b"\0" * 32)


async def test_missing_things(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_context(base_turn_id=99)
    with pytest.raises(NotFound):
        await store.append(42, "t", 1, payload(0))
    context = await store.create_context()
    with pytest.raises(Conflict):
        await store.append(context.context_id, "t", 1, payload(0), parent_turn_id=12345)
    with pytest.raises(NotFound):
        store.get_context(777)
    with pytest.raises(Unprocessable):
        await store.append(context.context_id, "t", 1, payload(0), idempotency_key="k" * 500)
    assert store.stats().turns == 0
    assert store.check()["ok"]


async def test_fork_lineage_and_children(store: Store) -> None:
    root = await store.create_context(client_tag="agent", provenance={"user": "ada"})
    turns = [(await store.append(root.context_id, "t", 1, payload(i))).turn for i in range(3)]
    fork = await store.create_context(base_turn_id=turns[1].turn_id)
    assert fork.head_turn_id == turns[1].turn_id and fork.head_depth == 2
    assert fork.lineage.parent_context_id == root.context_id
    assert fork.lineage.root_context_id == root.context_id
    assert fork.lineage.fork_turn_id == turns[1].turn_id
    appended = (await store.append(fork.context_id, "t", 1, payload(9))).turn
    grandchild = await store.create_context(base_turn_id=appended.turn_id)
    assert grandchild.lineage.parent_context_id == fork.context_id
    assert grandchild.lineage.root_context_id == root.context_id
    direct, total = store.children(root.context_id)
    assert [c.context_id for c in direct] == [fork.context_id] and total == 1
    every, total = store.children(root.context_id, recursive=True)
    assert [c.context_id for c in every] == [fork.context_id, grandchild.context_id] and total == 2
    # The fork shares history up to the base turn and diverges after it.
    assert [t.turn_id for t in store.page(fork.context_id, 10).turns] == [turns[0].turn_id, turns[1].turn_id,
                                                                         appended.turn_id]
    assert store.get_context(root.context_id).head_turn_id == turns[2].turn_id
    stored = store.get_context(root.context_id)
    assert stored.client_tag == "agent" and stored.provenance == {"user": "ada"}


async def test_list_by_activity_and_tag(store: Store) -> None:
    a = await store.create_context(client_tag="x")
    b = await store.create_context(client_tag="y")
    c = await store.create_context(client_tag="x")
    await asyncio.sleep(0.005)
    await store.append(a.context_id, "t", 1, payload(1))
    found, total = store.list_contexts(10)
    assert total == 3 and found[0].context_id == a.context_id
    assert {ctx.context_id for ctx in found} == {a.context_id, b.context_id, c.context_id}
    tagged, total = store.list_contexts(10, tag="x")
    assert total == 2 and [ctx.context_id for ctx in tagged] == [a.context_id, c.context_id]
    assert store.list_contexts(1, tag="x")[0][0].context_id == a.context_id
    assert store.list_contexts(10, tag="nope") == ([], 0)


async def test_explicit_parent_branches_within_context(store: Store) -> None:
    context = await store.create_context()
    first = (await store.append(context.context_id, "t", 1, payload(1))).turn
    await store.append(context.context_id, "t", 1, payload(2))
    branch = (await store.append(context.context_id, "t", 1, payload(3), parent_turn_id=first.turn_id)).turn
    assert branch.depth == 2 and branch.parent_turn_id == first.turn_id
    page = store.page(context.context_id, 10)
    assert [t.turn_id for t in page.turns] == [first.turn_id, branch.turn_id]
    root = (await store.append(context.context_id, "t", 1, payload(4), parent_turn_id=0)).turn
    assert root.depth == 1 and root.parent_turn_id == 0


async def test_cursor_must_be_on_chain(store: Store) -> None:
    a = await store.create_context()
    b = await store.create_context()
    on_a = [(await store.append(a.context_id, "t", 1, payload(i))).turn for i in range(5)]
    on_b = (await store.append(b.context_id, "t", 1, payload(9))).turn
    with pytest.raises(NotFound):
        store.page(a.context_id, 10, on_b.turn_id)
    with pytest.raises(NotFound):
        store.page(a.context_id, 10, 999_999)
    with pytest.raises(NotFound):
        store.page(b.context_id, 10, on_a[0].turn_id)
    assert [t.turn_id for t in store.page(a.context_id, 10, on_a[3].turn_id).turns] == [
        t.turn_id for t in on_a[:3]]
    assert store.page(a.context_id, 10, on_a[0].turn_id).turns == []


async def test_deep_chain_cursor_check_uses_jumps(store: Store) -> None:
    context = await store.create_context()
    turns = [(await store.append(context.context_id, "t", 1, payload(i, 1))).turn for i in range(300)]
    for probe in (0, 1, 2, 77, 128, 255, 298):
        page = store.page(context.context_id, 3, turns[probe].turn_id)
        assert [t.turn_id for t in page.turns] == [t.turn_id for t in turns[max(0, probe - 3):probe]]
    other = await store.create_context(base_turn_id=turns[150].turn_id)
    side = (await store.append(other.context_id, "t", 1, payload(1000))).turn
    with pytest.raises(NotFound):
        store.page(context.context_id, 3, side.turn_id)
    assert store.page(other.context_id, 2, turns[100].turn_id).turns[-1].turn_id == turns[99].turn_id


async def test_idempotency(store: Store) -> None:
    context = await store.create_context()
    first = await store.append(context.context_id, "t", 1, payload(1), idempotency_key="k1")
    again = await store.append(context.context_id, "t", 1, payload(1), idempotency_key="k1")
    assert again.replayed and again.turn == first.turn
    with pytest.raises(Conflict):
        await store.append(context.context_id, "t", 1, payload(2), idempotency_key="k1")
    other = await store.create_context()
    elsewhere = await store.append(other.context_id, "t", 1, payload(1), idempotency_key="k1")
    assert not elsewhere.replayed
    assert store.stats().turns == 2


async def test_concurrent_producers_form_one_chain(store: Store) -> None:
    context = await store.create_context()
    results = await asyncio.gather(*(store.append(context.context_id, "t", 1, payload(i)) for i in range(32)))
    ids = {r.turn.turn_id for r in results}
    assert len(ids) == 32
    page = store.page(context.context_id, 100)
    assert {t.turn_id for t in page.turns} == ids
    assert [t.depth for t in page.turns] == list(range(1, 33))
    for older, newer in zip(page.turns, page.turns[1:], strict=False):
        assert newer.parent_turn_id == older.turn_id


async def test_concurrent_duplicate_keys_make_one_turn(store: Store) -> None:
    context = await store.create_context()
    results = await asyncio.gather(*(store.append(context.context_id, "t", 1, payload(7), idempotency_key="same")
                                     for _ in range(16)))
    assert len({r.turn.turn_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert store.stats().turns == 1


def test_threads_share_one_store(store: Store) -> None:
    context = asyncio.run(store.create_context())

    def producer(k: int) -> None:
        async def run() -> None:
            for i in range(10):
                await store.append(context.context_id, "t", 1, payload(k * 100 + i))
        asyncio.run(run())

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    page = store.page(context.context_id, 1000)
    assert len(page.turns) == 80 and page.turns[-1].depth == 80


async def test_failed_op_does_not_abort_its_batch(store: Store) -> None:
    context = await store.create_context()
    good = [store.append(context.context_id, "t", 1, payload(i)) for i in range(10)]
    bad = [store.append(context.context_id, "t", 1, payload(i), parent_turn_id=10**9) for i in range(5)]
    missing = [store.append(10**6, "t", 1, payload(i)) for i in range(5)]
    results = await asyncio.gather(*good, *bad, *missing, return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results[:10])
    assert all(isinstance(r, Conflict) for r in results[10:15])
    assert all(isinstance(r, NotFound) for r in results[15:])
    assert store.stats().turns == 10
    report = store.check()
    assert report["ok"], report


async def test_restart_keeps_data_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Store(path) as first:
        context = await first.create_context(client_tag="keep")
        turns = [(await first.append(context.context_id, "t", 1, payload(i))).turn for i in range(5)]
        await first.append(context.context_id, "t", 1, payload(0), idempotency_key="once")
        before = first.stats()
    with Store(path) as second:
        assert second.stats().turns == before.turns and second.stats().blobs == before.blobs
        assert [t.turn_id for t in second.page(context.context_id, 5, second.get_context(context.context_id)
                                               .head_turn_id).turns] == [t.turn_id for t in turns]
        replay = await second.append(context.context_id, "t", 1, payload(0), idempotency_key="once")
        assert replay.replayed
        fresh = await second.append(context.context_id, "t", 1, payload(99))
        assert fresh.turn.turn_id > max(t.turn_id for t in turns) + 1
        new_context = await second.create_context()
        assert new_context.context_id == context.context_id + 1
        assert second.get_context(context.context_id).client_tag == "keep"
        assert second.check()["ok"]


def test_format_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    Store(path).close()
    env = lmdb.open(str(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", b'{"format_version": 99}', db=meta)
    env.close()
    with pytest.raises(FormatMismatch):
        Store(path)


async def test_map_grows_when_full(tmp_path: Path) -> None:
    with Store(tmp_path / "data", map_size=1 << 20) as small:
        context = await small.create_context()
        blobs = [os.urandom(20_000) for _ in range(200)]
        for raw in blobs:
            await small.append(context.context_id, "t", 1, msgpack.packb({"b": raw}))
        assert small.stats().turns == 200
        assert small._env.map_size() > 1 << 20
        assert small.check()["ok"]


async def test_check_reports_corruption(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Store(path) as opened:
        context = await opened.create_context()
        turn = (await opened.append(context.context_id, "t", 1, payload(1))).turn
    env = lmdb.open(str(path), max_dbs=16)
    blobs = env.open_db(b"blobs")
    with env.begin(write=True) as txn:
        txn.put(turn.content_hash, b"\x00\x00\x00\x00\x03abc", db=blobs)
    env.close()
    with Store(path) as reopened:
        report = reopened.check()
        assert not report["ok"]
        assert report["problems"][0]["kind"] == "blob_hash_mismatch"


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    opened = Store(tmp_path / "data")
    opened.close()
    opened.close()
    with pytest.raises(StoreClosed):
        await opened.create_context()
    with pytest.raises(StoreClosed):
        opened.stats()


def test_open_close_leaks_nothing(tmp_path: Path) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    Store(tmp_path / "data").close()
    threads, files = threading.active_count(), fds()
    for _ in range(200):
        with Store(tmp_path / "data") as opened:
            opened.stats()
    assert threading.active_count() == threads
    assert fds() == files


async def test_backup_is_a_consistent_copy(tmp_path: Path) -> None:
    with Store(tmp_path / "data") as opened:
        context = await opened.create_context()
        for i in range(20):
            await opened.append(context.context_id, "t", 1, payload(i))
        opened.backup(tmp_path / "copy")
    with Store(tmp_path / "copy") as copy:
        assert copy.stats().turns == 20 and copy.check()["ok"]


async def test_trained_dictionary_compresses_and_survives_reopen(tmp_path: Path) -> None:
    from bench.corpus import conversation

    samples = [msgpack.packb(data) for seed in range(60) for data in conversation(seed)]
    path = tmp_path / "data"
    with Store(path, dictionary_after=300, dictionary_size=8192) as store:
        context = await store.create_context()
        first = [(await store.append(context.context_id, "t", 1, raw)).turn for raw in samples[:300]]
        first += [(await store.append(context.context_id, "t", 1, raw)).turn for raw in samples[300:400]]
        for _ in range(1500):  # training runs in the background
            if store.current_dictionary:
                break
            await asyncio.sleep(0.02)
        assert store.current_dictionary == 1
        later = [(await store.append(context.context_id, "t", 1, raw)).turn for raw in samples[400:]]
        assert {t.compression for t in first[:300]} <= {0, 1}
        assert sum(t.compression == 2 for t in later) > len(later) // 2
        plain = sum(len(BlobCodec().encode(raw)[0]) for raw in samples[400:])
        with_dictionary = sum(store.blob_info(t.content_hash)[2] for t in later)
        assert with_dictionary < plain * 0.8
        assert store.check()["ok"]
    with Store(path) as reopened:
        for turn, raw in zip(first + later, samples, strict=True):
            assert reopened.get_blob(turn.content_hash) == raw
        assert reopened.check()["ok"] and reopened.current_dictionary == 1


async def test_tag_length_is_bounded_by_the_index(store: Store) -> None:
    longest = "t" * 400
    context = await store.create_context(client_tag=longest)
    assert store.list_contexts(10, tag=longest)[0][0].context_id == context.context_id
    with pytest.raises(Unprocessable):
        await store.create_context(client_tag="t" * 401)
    assert store.stats().contexts == 1
