"""Retention and expiry as the server runs them (:class:`cxdb.service.lifecycle.Lifecycle`), on each
backend, with the lifecycle's clock moved forward: contexts past their rule's time are deleted (the
longest matching prefix decides), head history and idempotency keys expire after their settings."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest

from cxdb.config import Settings
from cxdb.errors import NotFound
from cxdb.service.events import Changes
from cxdb.service.lifecycle import Lifecycle
from cxdb.storage import Backend

DAY = 86_400.0


def lifecycle(store: Backend, days_later: float, **settings: Any) -> Lifecycle:
    later = time.time() + days_later * DAY
    return Lifecycle(store, Settings(**settings), Changes(store), clock=lambda: later)


async def alive(store: Backend, ids: list[int]) -> list[int]:
    found = []
    for context_id in ids:
        try:
            await store.get_context(context_id)
            found.append(context_id)
        except NotFound:
            continue
    return found


async def tagged(store: Backend, *tags: str | None) -> list[int]:
    ids = []
    for tag in tags:
        context = await store.create_context(client_tag=tag)
        await store.append(context.context_id, "t", 1, msgpack.packb({"tag": tag}))
        ids.append(context.context_id)
    return ids


async def test_prefix_rules_and_the_default_delete_what_is_past_its_time(opened: Backend) -> None:
    ids = await tagged(opened, "runs/a", "runs/keep/b", "eval/c", "other", None)
    rules = (("runs/", 7 * DAY), ("runs/keep/", 365 * DAY), ("eval/", 30 * DAY))
    assert await lifecycle(opened, 6, retain=rules).retain() == 0
    assert await lifecycle(opened, 8, retain=rules).retain() == 1  # runs/a; runs/keep/ has a rule of its own
    assert await alive(opened, ids) == ids[1:]
    assert await lifecycle(opened, 8, retain=rules, retain_days=5 * DAY).retain() == 2  # "other" and untagged
    assert await alive(opened, ids) == ids[1:3]
    assert await lifecycle(opened, 31, retain=rules, retain_days=5 * DAY).retain() == 1  # eval/c
    assert await lifecycle(opened, 400, retain=rules).retain() == 1  # runs/keep/b
    assert await alive(opened, ids) == []
    done = await lifecycle(opened, 400).maintain()
    assert done["freed"].turns == 5 and (await opened.stats()).turns == 0
    assert (await opened.check())["ok"]


async def test_activity_keeps_a_context(store_url: str) -> None:
    now = [time.time()]
    if store_url.startswith("postgresql"):
        from cxdb.storage.postgres import PostgresBackend

        store: Backend = PostgresBackend(store_url, 4, 64, clock=lambda: now[0])
    else:
        from pathlib import Path

        from cxdb.storage.lmdb.backend import LmdbBackend

        store = LmdbBackend(Path(store_url), 1 << 24, 64, clock=lambda: now[0])
    await store.start()
    try:
        quiet, busy = await tagged(store, "a", "b")
        now[0] += 3 * DAY
        await store.append(busy, "t", 1, msgpack.packb({"again": True}))
        later = now[0] + 0.5 * DAY
        found = Lifecycle(store, Settings(retain_days=1 * DAY), Changes(store), clock=lambda: later)
        assert await found.retain() == 1
        assert await alive(store, [quiet, busy]) == [busy]
    finally:
        await store.close()


async def test_a_retention_pass_walks_many_contexts_in_bounded_pages(opened: Backend) -> None:
    ids = await tagged(opened, *(["drop", "keep/x"] * 70))
    deleted = await lifecycle(opened, 10, retain=(("keep/", 30 * DAY),), retain_days=1 * DAY).retain()
    assert deleted == 70
    assert await alive(opened, ids) == ids[1::2]


async def test_a_pass_stops_after_its_pages_and_the_next_goes_on(opened: Backend,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import cxdb.service.lifecycle as module

    monkeypatch.setattr(module, "RETAIN_PAGES_PER_PASS", 1)
    ids = await tagged(opened, *(["drop"] * 10 + ["keep/x"] * 100))  # the kept ones are newer: walked first
    found = lifecycle(opened, 10, retain=(("keep/", 30 * DAY),), retain_days=1 * DAY)
    assert [await found.retain() for _ in range(3)] == [0, 10, 0]  # 64 kept; then 36 kept and 10; then none
    assert await alive(opened, ids) == ids[10:]


async def test_history_and_keys_expire_after_their_settings(opened: Backend) -> None:
    context = await opened.create_context()
    first = await opened.append(context.context_id, "t", 1, msgpack.packb({"n": 1}), idempotency_key="k")
    await opened.append(context.context_id, "t", 1, msgpack.packb({"n": 2}))
    await opened.append(context.context_id, "t", 1, msgpack.packb({"n": 3}), parent_turn_id=first.turn.turn_id)
    assert await lifecycle(opened, 6).expire() == (0, 0)  # within 30 days and 7 days
    assert await lifecycle(opened, 8).expire() == (0, 1)  # the key, after --idempotency-ttl 7d
    assert await lifecycle(opened, 29, head_history_days=None).expire() == (0, 0)  # off: kept forever
    assert await lifecycle(opened, 31).expire() == (1, 0)  # the replaced head, after 30 days
    done = await lifecycle(opened, 31).maintain()
    assert done["freed"].turns == 1
    assert (await opened.check())["ok"]
