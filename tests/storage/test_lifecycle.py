"""Deleting contexts and reclaiming what nothing reaches, on each backend through the storage interface:
forks keep what they share, reclamation frees exactly the rest in bounded steps, the dedup race never
leaves a turn without its blob, and history and keys expire."""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

import msgpack
import pytest

from cxdb.codec import content_hash
from cxdb.errors import Conflict, NotFound
from cxdb.storage import Backend
from cxdb.storage.base import NewTurn, Pending, Reclaimed


def raw(n: int, pad: int = 0) -> bytes:
    return msgpack.packb({"n": n, "pad": "x" * pad})  # type: ignore[no-any-return]


async def chain(store: Backend, context_id: int, n: int, first: int = 0) -> list[int]:
    return [(await store.append(context_id, "t", 1, raw(first + i))).turn.turn_id for i in range(n)]


async def reclaim_all(store: Backend, budget: int = 512) -> Reclaimed:
    total = Reclaimed()
    for _ in range(10_000):
        step = await store.reclaim(budget)
        total += step
        if not step.more:
            return total
    raise AssertionError("reclamation did not finish")


async def clean(store: Backend) -> None:
    report = await store.check()
    assert report["ok"], report


async def page_ids(store: Backend, context_id: int) -> list[int]:
    _, start, _ = await store.page_start(context_id)
    found, _ = await store.chain(start, 1000)
    return [t.turn_id for t in found]


async def test_a_deleted_context_is_gone_and_only_what_no_fork_reaches_is_freed(opened: Backend) -> None:
    a = await opened.create_context(client_tag="t")
    turns = await chain(opened, a.context_id, 5)
    fork = await opened.create_context(turns[2], client_tag="t")
    mine = await chain(opened, fork.context_id, 2, first=100)
    before = await page_ids(opened, fork.context_id)
    hashes = [(await opened.turn(turn_id) or fail()).content_hash for turn_id in turns[3:]]
    assert await opened.delete_context(a.context_id) == [a.context_id]
    with pytest.raises(NotFound):
        await opened.get_context(a.context_id)
    with pytest.raises(NotFound):
        await opened.delete_context(a.context_id)
    with pytest.raises(NotFound):
        await opened.append(a.context_id, "t", 1, raw(9))
    listed, total = await opened.list_contexts(10, tag="t")
    assert [c.context_id for c in listed] == [fork.context_id] and total == 1
    assert (await opened.stats()).contexts == 1
    pending = await opened.pending()
    assert pending.contexts == 1 and pending.turns >= 1  # the head is queued at once; the chain is found later
    freed = await reclaim_all(opened, budget=2)
    assert (freed.contexts, freed.turns) == (1, 2)  # turns 4 and 5: the fork reaches 1 to 3
    assert await opened.pending() == Pending()
    assert await page_ids(opened, fork.context_id) == before == [*turns[:3], *mine]
    for gone in turns[3:]:
        assert await opened.turn(gone) is None
    for digest in hashes:
        with pytest.raises(NotFound):
            await opened.get_blob(digest)
    assert (await opened.stats()).turns == 5
    await clean(opened)
    await opened.delete_context(fork.context_id)
    freed = await reclaim_all(opened)
    assert freed.turns == 5 and freed.blobs == 5 and freed.bytes > 0
    stats = await opened.stats()
    assert (stats.contexts, stats.turns, stats.blobs, stats.blob_stored_bytes, stats.blob_raw_bytes) == (0, 0, 0, 0, 0)
    await clean(opened)


def fail() -> NoReturn:
    raise AssertionError("missing")


async def test_recursive_delete_takes_every_descendant_and_nothing_else(opened: Backend) -> None:
    root = await opened.create_context()
    base = await chain(opened, root.context_id, 2)
    child = await opened.create_context(base[1])
    grand = await opened.create_context((await chain(opened, child.context_id, 1))[0])
    other = await opened.create_context(base[0])
    assert sorted(await opened.delete_context(child.context_id, recursive=True)) == [child.context_id,
                                                                                      grand.context_id]
    assert [c.context_id for c in (await opened.children(root.context_id))[0]] == [other.context_id]
    assert sorted(await opened.delete_context(root.context_id, recursive=True)) == [root.context_id,
                                                                                     other.context_id]
    assert (await opened.stats()).contexts == 0
    await reclaim_all(opened)
    assert (await opened.stats()).turns == 0
    await clean(opened)


async def test_deleting_the_root_of_a_fork_tree_keeps_the_forks_whole(opened: Backend) -> None:
    root = await opened.create_context()
    base = await chain(opened, root.context_id, 3)
    forks = [await opened.create_context(base[i]) for i in range(3)]
    for n, fork in enumerate(forks):
        await chain(opened, fork.context_id, 2, first=10 * (n + 1))
    pages = {f.context_id: await page_ids(opened, f.context_id) for f in forks}
    await opened.delete_context(root.context_id)
    await reclaim_all(opened, budget=1)
    assert {f.context_id: await page_ids(opened, f.context_id) for f in forks} == pages
    kept = (await opened.get_context(forks[0].context_id)).lineage
    assert kept.parent_context_id == root.context_id  # lineage remembers where it came from
    assert (await opened.children(forks[0].context_id))[1] == 0
    assert (await opened.stats()).turns == 3 + 6
    await clean(opened)


async def test_a_turn_awaiting_reclamation_is_neither_parent_nor_base(opened: Backend) -> None:
    doomed = await opened.create_context()
    head = (await chain(opened, doomed.context_id, 2))[-1]
    other = await opened.create_context()
    await opened.delete_context(doomed.context_id)
    with pytest.raises(Conflict) as refused:
        await opened.append(other.context_id, "t", 1, raw(1), parent_turn_id=head)
    assert refused.value.details["reason"] == "parent_not_found"
    with pytest.raises(NotFound):
        await opened.create_context(head)
    await reclaim_all(opened)
    await clean(opened)


@pytest.mark.parametrize("steps", range(0, 9))
async def test_the_dedup_race_never_leaves_a_turn_without_its_blob(opened: Backend, steps: int) -> None:
    """An append of a payload whose blob is at any stage of reclamation (queued, its turn marked, the
    blob unnamed, deleted): the new turn's blob is there at the end."""
    doomed = await opened.create_context()
    await opened.append(doomed.context_id, "t", 1, raw(7, pad=300))
    await opened.append(doomed.context_id, "t", 1, raw(8))
    keeper = await opened.create_context()
    await opened.delete_context(doomed.context_id)
    for _ in range(steps):
        await opened.reclaim(1)
    same = await opened.append(keeper.context_id, "t", 1, raw(7, pad=300))
    await reclaim_all(opened, budget=1)
    assert await opened.get_blob(same.turn.content_hash) == raw(7, pad=300)
    assert (await opened.stats()).blobs == 1
    await clean(opened)


async def test_a_payload_named_again_within_a_batch_is_one_blob_held_by_each_turn(opened: Backend) -> None:
    """A batch naming one payload three times, and one a stored turn has: each is one blob, counted
    once per turn naming it, so it stays until the last of them is reclaimed."""
    keeper = await opened.create_context()
    stored = await opened.append(keeper.context_id, "t", 1, raw(1, pad=200))
    doomed = await opened.create_context()
    batch = [NewTurn("t", 1, raw(n, pad=200)) for n in (2, 2, 1, 3, 2)]
    written = await opened.append_batch(doomed.context_id, batch)
    assert [r.turn.content_hash for r in written] == [content_hash(t.payload) for t in batch]
    assert written[2].turn.content_hash == stored.turn.content_hash
    stats = await opened.stats()
    assert (stats.blobs, stats.dedup_hits) == (3, 3)  # raw 1, 2 and 3; 2 twice more, 1 once more
    await clean(opened)
    await opened.delete_context(doomed.context_id)
    await reclaim_all(opened, budget=2)
    assert (await opened.stats()).blobs == 1
    assert await opened.get_blob(stored.turn.content_hash) == raw(1, pad=200)
    await clean(opened)


async def test_appends_and_reclamation_at_once_keep_every_blob(opened: Backend) -> None:
    """Concurrently: reclamation of contexts holding payloads P0..P9, and appends of the same payloads
    to a live context. Every appended turn's blob is readable after, and the counts check."""
    keeper = await opened.create_context()
    appended = []
    for round_ in range(6):
        doomed = [await opened.create_context() for _ in range(3)]
        for context in doomed:
            for n in range(10):
                await opened.append(context.context_id, "t", 1, raw(n, pad=200))
        for context in doomed:
            await opened.delete_context(context.context_id)

        async def appends(offset: int = round_) -> list[bytes]:
            found = []
            for n in range(10):
                result = await opened.append(keeper.context_id, "t", 1, raw((n + offset) % 10, pad=200))
                found.append(result.turn.content_hash)
            return found

        async def reclaim() -> None:
            await reclaim_all(opened, budget=3)

        results = await asyncio.gather(appends(), reclaim(), appends(offset=round_ + 5))
        appended.extend(results[0] + results[2])
    await reclaim_all(opened)
    for digest in appended:
        assert msgpack.unpackb(await opened.get_blob(digest))["pad"] == "x" * 200
    assert (await opened.stats()).blobs == 10
    await clean(opened)


async def test_an_append_racing_a_delete_lands_before_it_or_is_not_found(opened: Backend) -> None:
    context = await opened.create_context()
    await chain(opened, context.context_id, 3)

    async def append(n: int) -> str:
        try:
            await opened.append(context.context_id, "t", 1, raw(n))
            return "ok"
        except NotFound:
            return "missing"

    async def delete() -> str:
        await asyncio.sleep(0)
        await opened.delete_context(context.context_id)
        return "deleted"

    outcomes = await asyncio.gather(*(append(n) for n in range(20)), delete(), *(append(n) for n in range(20, 40)))
    assert outcomes[20] == "deleted" and set(outcomes) <= {"ok", "missing", "deleted"}
    await reclaim_all(opened)
    assert (await opened.stats()).turns == 0  # whatever landed went with the context
    await clean(opened)


async def test_expired_keys_and_history_go_and_what_only_history_held_is_freed(opened: Backend) -> None:
    context = await opened.create_context()
    first = await opened.append(context.context_id, "t", 1, raw(1), idempotency_key="k")
    branch = await chain(opened, context.context_id, 2, first=10)
    moved = await opened.append(context.context_id, "t", 1, raw(2), parent_turn_id=first.turn.turn_id)
    assert moved.replaced_head_turn_id == branch[-1]
    assert await opened.expire(0, 0, 100) == (0, 0)  # nothing is older than the epoch
    later = int(time.time() * 1000) + 60_000
    assert await opened.expire(later, 0, 100) == (1, 0)
    assert (await opened.head_history(context.context_id, 10))[0] == []
    assert await opened.expire(0, later, 100) == (0, 1)
    assert await opened.idempotency_keys(context.context_id, None, 10) == []
    fresh = await opened.append(context.context_id, "t", 1, raw(3), idempotency_key="k")
    assert not fresh.replayed  # the key is free again, another request may take it
    freed = await reclaim_all(opened)
    assert freed.turns == 2  # the branch only the history entry held
    for turn_id in branch:
        assert await opened.turn(turn_id) is None
    assert await page_ids(opened, context.context_id) == [first.turn.turn_id, moved.turn.turn_id, fresh.turn.turn_id]
    await clean(opened)


async def test_expiry_works_in_bounded_steps_oldest_first(opened: Backend) -> None:
    contexts = [await opened.create_context() for _ in range(3)]
    for n, context in enumerate(contexts):
        for k in range(4):
            await opened.append(context.context_id, "t", 1, raw(10 * n + k), idempotency_key=f"k{k}")
    later = int(time.time() * 1000) + 60_000
    assert await opened.expire(0, later, 5) == (0, 5)
    assert await opened.expire(0, later, 5) == (0, 5)
    assert await opened.expire(0, later, 5) == (0, 2)
    for context in contexts:
        assert await opened.idempotency_keys(context.context_id, None, 10) == []
    await clean(opened)


async def test_a_deleted_contexts_history_and_keys_are_purged(opened: Backend) -> None:
    context = await opened.create_context()
    first = await opened.append(context.context_id, "t", 1, raw(1), idempotency_key="a")
    await chain(opened, context.context_id, 3, first=10)
    await opened.append(context.context_id, "t", 1, raw(2), parent_turn_id=first.turn.turn_id, idempotency_key="b")
    await opened.delete_context(context.context_id)
    assert (await opened.pending()).contexts == 1
    freed = await reclaim_all(opened, budget=1)
    assert freed.contexts == 1 and freed.turns == 5
    assert await opened.idempotency_keys(context.context_id, None, 10) == []
    assert await opened.expire(2**62, 2**62, 100) == (0, 0)  # their age index went with them
    await clean(opened)


async def test_deletion_is_an_event(opened: Backend) -> None:
    context = await opened.create_context()
    head = (await chain(opened, context.context_id, 2))[-1]
    await opened.delete_context(context.context_id)
    last = (await opened.events(0, 100))[-1]
    assert (last.kind, last.context_id, last.head_turn_id, last.head_depth) == (
        "context_deleted", context.context_id, head, 2)


async def test_a_tree_past_the_bound_is_refused_whole(opened: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound of one deletion (10,000 contexts), made 3 here: a larger tree is refused with nothing
    deleted, and its subtrees can go first."""
    import cxdb.storage.lmdb.lifecycle as lmdb_lifecycle

    monkeypatch.setattr(lmdb_lifecycle, "MAX_DELETE", 3)
    try:
        import cxdb.storage.postgres.lifecycle as postgres_lifecycle

        monkeypatch.setattr(postgres_lifecycle, "MAX_DELETE", 3)
    except ImportError:  # no asyncpg: the LMDB run alone
        pass
    root = await opened.create_context()
    base = (await chain(opened, root.context_id, 1))[0]
    children = [await opened.create_context(base) for _ in range(3)]
    from cxdb.errors import Unprocessable

    with pytest.raises(Unprocessable) as refused:
        await opened.delete_context(root.context_id, recursive=True)
    assert refused.value.details["max_contexts"] == 3
    assert (await opened.stats()).contexts == 4
    await opened.delete_context(children[0].context_id)
    assert sorted(await opened.delete_context(root.context_id, recursive=True)) == sorted(
        [root.context_id, children[1].context_id, children[2].context_id])
    await reclaim_all(opened)
    await clean(opened)
