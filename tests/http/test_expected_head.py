"""Optimistic concurrency on live servers, on each backend: expected_head_turn_id lets an append
through only while the head is that turn, answers 409 head_moved with the head found otherwise (and
stores nothing), and of concurrent appends expecting one head through two workers exactly one wins."""

from __future__ import annotations

import pytest

from cxdb import Client, Conflict, CxdbError
from tests.conftest import LiveServer, at_once

MESSAGE = {"type_id": "t", "type_version": 1}


def test_an_append_expecting_the_head_goes_through_and_a_stale_one_stores_nothing(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        first = client.append_turn(context.context_id, MESSAGE, data={"n": 1}, expected_head_turn_id="0")
        assert first.parent_turn_id == "0"
        with pytest.raises(Conflict) as stale:
            client.append_turn(context.context_id, MESSAGE, data={"n": 2}, expected_head_turn_id="0")
        details = stale.value.details
        assert (details["reason"], details["context_id"], details["expected_head_turn_id"], details["head_turn_id"]) \
            == ("head_moved", context.context_id, "0", first.turn_id)
        second = client.append_turn(context.context_id, MESSAGE, data={"n": 2}, expected_head_turn_id=first.turn_id)
        assert second.parent_turn_id == first.turn_id  # without a parent, the parent is the expected head
        turns_before = client.stats()["turns"]
        with pytest.raises(Conflict):
            client.append_turn(context.context_id, MESSAGE, data={"n": 3}, expected_head_turn_id=first.turn_id)
        assert client.stats()["turns"] == turns_before
        # Regenerate, only if nobody appended since: an explicit parent with the expected head.
        regenerated = client.append_turn(context.context_id, MESSAGE, data={"n": "2b"}, parent_turn_id=first.turn_id,
                                         expected_head_turn_id=second.turn_id)
        assert regenerated.parent_turn_id == first.turn_id
        with pytest.raises(Conflict) as missing:
            client.append_turn(context.context_id, MESSAGE, data={"n": 4}, parent_turn_id="999999",
                               expected_head_turn_id=regenerated.turn_id)
        assert missing.value.details["reason"] == "parent_not_found"


def test_a_replay_answers_before_the_head_check(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        body = {**MESSAGE, "data": {"n": 1}, "idempotency_key": "step-1", "expected_head_turn_id": "0"}
        first = client.append_turn(context.context_id, body)
        again = client.append_turn(context.context_id, body)  # the head moved, by this very append
        assert again.turn_id == first.turn_id
        with pytest.raises(Conflict) as other:  # the key with another expected head is another request
            client.append_turn(context.context_id, {**body, "expected_head_turn_id": first.turn_id})
        assert "idempotency_key" in other.value.details


def test_of_16_concurrent_appends_expecting_one_head_exactly_one_wins(store_url: str) -> None:
    server = LiveServer(store_url, "--workers", "2")
    try:
        with Client(server.url) as client:
            context = client.create_context()
            head = client.append_turn(context.context_id, MESSAGE, data={"n": 0}).turn_id
        outcomes = at_once(server.url, 16, lambda own, n: own.append_turn(
            context.context_id, MESSAGE, data={"n": n}, expected_head_turn_id=head).turn_id)
        won = [outcome for outcome in outcomes if not isinstance(outcome, CxdbError)]
        lost = [outcome.details for outcome in outcomes if isinstance(outcome, Conflict)]
        assert len(won) == 1 and len(lost) == 15
        assert all(d["reason"] == "head_moved" and d["head_turn_id"] == won[0] for d in lost)
        with Client(server.url) as client:
            page = client.get_turns(context.context_id)
            assert [turn["turn_id"] for turn in page["turns"]] == [head, won[0]]
            assert client.stats()["turns"] == 2
    finally:
        assert server.stop() == 0
