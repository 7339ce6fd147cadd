"""Batch append on live servers, on each backend: a chain stored all or none, invalid items named by
index, idempotent batches replayed whole, a partly repeated batch refused, expected heads, head
history, and batches that survive kill -9 whole or not at all."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from cxdb import Client, Conflict, CxdbError, NotFound, Unprocessable
from tests.conftest import BUNDLES, LiveServer, at_once

MESSAGE = {"type_id": "t", "type_version": 1}
CHAT = {"type_id": "cxdb.chat.Message", "type_version": 2}


def items(count: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{**MESSAGE, "data": {"n": n}, **extra} for n in range(start, start + count)]


def test_a_batch_is_a_chain_from_the_head_or_a_parent(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        first = client.append_batch(context.context_id, items(3))
        assert first.context_id == context.context_id and first.head_depth == 3
        assert [t.depth for t in first.turns] == [1, 2, 3] and first.head_turn_id == first.turns[-1].turn_id
        page = client.get_turns(context.context_id)["turns"]
        assert [t["turn_id"] for t in page] == [t.turn_id for t in first.turns]
        assert [t["data"]["n"] for t in page] == [0, 1, 2]
        assert [t["parent_turn_id"] for t in page] == ["0"] + [t.turn_id for t in first.turns[:-1]]
        # From an earlier turn: a branch, and the old head goes to the history.
        branch = client.append_batch(context.context_id, items(2, 10), parent_turn_id=first.turns[0].turn_id)
        assert branch.replaced_head_turn_id == first.head_turn_id and branch.head_depth == 3
        assert client.heads(context.context_id)["heads"][0]["head_turn_id"] == first.head_turn_id
        assert "replaced_head_turn_id" not in client.append_batch(context.context_id, items(1, 20))


def test_an_invalid_item_anywhere_stores_nothing(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        client.publish_bundle(BUNDLES / "conversation-v2.json")
        context = client.create_context()
        before = client.stats()["turns"]
        good = {**CHAT, "data": {"role": "user", "text": "hi"}}
        cases = [
            ([good, {**CHAT, "data": {"role": "user", "text": 5}}, good], 1, "text"),  # the registry refuses it
            ([good, good, {"type_version": 1, "data": {}}], 2, "type_id"),
            ([good, {**MESSAGE, "data": "not an object"}], 1, "data"),
            ([good, {**MESSAGE, "data": {}, "idempotency_key": "k"}, {**MESSAGE, "data": {}, "idempotency_key": "k"}],
             2, "idempotency_key"),
            ([good, 7], 1, "turns[1]"),
        ]
        for turns, index, field in cases:
            with pytest.raises(Unprocessable) as refused:
                client.append_batch(context.context_id, turns)
            assert refused.value.details["index"] == index and field in refused.value.details["field"], refused.value
        for turns in ([], items(1001)):
            with pytest.raises(Unprocessable) as refused:
                client.append_batch(context.context_id, turns)
            assert refused.value.details["field"] == "turns"
        with pytest.raises(Conflict) as missing:
            client.append_batch(context.context_id, items(2), parent_turn_id="999999")
        assert missing.value.details["reason"] == "parent_not_found"
        with pytest.raises(NotFound):
            client.append_batch("424242", items(2))
        assert client.stats()["turns"] == before and client.get_context(context.context_id).head_turn_id == "0"


def test_idempotent_batches_replay_whole_and_a_partial_repeat_is_refused(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        keyed = [{**MESSAGE, "data": {"n": n}, "idempotency_key": f"step-{n}"} for n in range(3)]
        first = client.append_batch(context.context_id, keyed)
        again = client.append_batch(context.context_id, keyed)
        assert again == first
        url = urlsplit(live_server.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            conn.request("POST", f"/v1/contexts/{context.context_id}/append-batch", json.dumps({"turns": keyed}))
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200 and reply.getheader("Idempotent-Replayed") == "true"
        finally:
            conn.close()
        mixed = [*keyed[:2], {**MESSAGE, "data": {"n": 9}, "idempotency_key": "step-9"}]
        with pytest.raises(Conflict) as partly:
            client.append_batch(context.context_id, mixed)
        assert partly.value.details["reason"] == "partly_replayed"
        assert partly.value.details["replayed_indexes"] == [0, 1]
        changed = [keyed[0], {**keyed[1], "data": {"n": "other"}}, keyed[2]]
        with pytest.raises(Conflict) as reused:
            client.append_batch(context.context_id, changed)
        assert reused.value.details["idempotency_key"] == "step-1"
        assert client.get_context(context.context_id).head_depth == 3


def test_expected_head_on_batches_lets_exactly_one_of_many_through(store_url: str) -> None:
    server = LiveServer(store_url, "--workers", "2")
    try:
        with Client(server.url) as client:
            context = client.create_context()
            head = client.append_batch(context.context_id, items(2)).head_turn_id
        outcomes = at_once(server.url, 8, lambda own, n: own.append_batch(
            context.context_id, items(3, 100 * n), expected_head_turn_id=head))
        won = [outcome for outcome in outcomes if not isinstance(outcome, CxdbError)]
        lost = [outcome.details for outcome in outcomes if isinstance(outcome, Conflict)]
        assert len(won) == 1 and len(lost) == 7
        assert all(d["reason"] == "head_moved" and d["head_turn_id"] == won[0].head_turn_id for d in lost)
        with Client(server.url) as client:
            assert client.get_context(context.context_id).head_depth == 5 and client.stats()["turns"] == 5
    finally:
        assert server.stop() == 0


def test_batches_survive_kill_9_whole_or_not_at_all(store_url: str) -> None:
    server = LiveServer(store_url)
    acknowledged: list[list[str]] = []
    with Client(server.url) as client:
        context = client.create_context()
    stop = threading.Event()

    def writer() -> None:
        with Client(server.url, timeout=5) as own:
            n = 0
            while not stop.is_set():
                try:
                    done = own.append_batch(context.context_id, items(50, n))
                except Exception:  # the server died under it
                    return
                acknowledged.append([t.turn_id for t in done.turns])
                n += 50

    thread = threading.Thread(target=writer)
    thread.start()
    while len(acknowledged) < 5 and thread.is_alive():
        thread.join(0.01)
    assert len(acknowledged) >= 5, "the writer stopped early"
    server.kill()
    stop.set()
    thread.join()
    again = LiveServer(store_url)
    try:
        with Client(again.url) as client:
            stored = [turn["turn_id"] for turn in reversed(list(client.iter_turns(context.context_id,
                                                                                  page_size=1000)))]
            assert len(stored) % 50 == 0  # whole batches only
            assert stored[:len(acknowledged) * 50] == [t for batch in acknowledged for t in batch]
            assert [turn["data"]["n"] for turn in client.get_turns(context.context_id, limit=1000)["turns"]] == \
                list(range(len(stored)))[-1000:]
    finally:
        assert again.stop() == 0
