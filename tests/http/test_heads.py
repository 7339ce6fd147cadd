"""Head history on live servers, on each backend: an append that moves the head off its chain records
the old head and says so; /heads pages the history; cursors and exact turns reach every chain of the
context; and of 16 concurrent appends to one parent, through two workers, every acknowledged turn
stays reachable."""

from __future__ import annotations

import pytest

from cxdb import BadRequest, Client, CxdbError, NotFound
from tests.conftest import LiveServer, at_once

MESSAGE = {"type_id": "t", "type_version": 1}


def reachable(client: Client, context_id: str) -> set[str]:
    """Every turn on the chain of the context's head or of a replaced head, through the API alone."""
    tops = [client.get_context(context_id).head_turn_id]
    before = None
    while True:
        page = client.heads(context_id, limit=2, before=before)
        tops += [entry["head_turn_id"] for entry in page["heads"]]
        before = page["next_before"]
        if before is None:
            break
    found: set[str] = set()
    for top in tops:
        if top == "0":
            continue
        found.add(client.get_turn(context_id, top)["turn_id"])
        cursor = top
        while cursor is not None:
            page = client.get_turns(context_id, before_turn_id=cursor, limit=2)
            found.update(turn["turn_id"] for turn in page["turns"])
            cursor = page["next_before_turn_id"]
    return found


def test_a_branching_append_records_the_old_head_and_every_turn_stays_reachable(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        a = client.append_turn(context.context_id, MESSAGE, data={"n": "a"})
        b = client.append_turn(context.context_id, MESSAGE, data={"n": "b"})
        assert "replaced_head_turn_id" not in b  # b descends from a: nothing was replaced
        regenerate = {**MESSAGE, "data": {"n": "b2"}, "parent_turn_id": a.turn_id, "idempotency_key": "regen"}
        regenerated = client.append_turn(context.context_id, regenerate)
        assert regenerated.replaced_head_turn_id == b.turn_id
        assert client.append_turn(context.context_id, regenerate) == regenerated  # a replay answers the same
        root = client.append_turn(context.context_id, MESSAGE, data={"n": "r"}, parent_turn_id="0")
        assert root.replaced_head_turn_id == regenerated.turn_id
        history = client.heads(context.context_id)
        assert history["context_id"] == context.context_id and history["next_before"] is None
        assert [(e["head_turn_id"], e["head_depth"], e["replaced_by_turn_id"]) for e in history["heads"]] == [
            (regenerated.turn_id, 2, root.turn_id), (b.turn_id, 2, regenerated.turn_id)]
        assert all(e["replaced_at"].endswith("Z") for e in history["heads"])
        first = client.heads(context.context_id, limit=1)
        assert len(first["heads"]) == 1 and first["next_before"] == root.turn_id
        rest = client.heads(context.context_id, limit=1, before=first["next_before"])
        assert [e["head_turn_id"] for e in rest["heads"]] == [b.turn_id] and rest["next_before"] is None
        assert reachable(client, context.context_id) == {a.turn_id, b.turn_id, regenerated.turn_id, root.turn_id}
        # b is off the current chain, but a page of its chain is there, and it is there exactly.
        assert client.get_turns(context.context_id, before_turn_id=b.turn_id)["turns"][0]["turn_id"] == a.turn_id
        assert client.get_turn(context.context_id, b.turn_id)["turn_id"] == b.turn_id
        other = client.create_context()
        stranger = client.append_turn(other.context_id, MESSAGE, data={"n": "x"}).turn_id
        with pytest.raises(NotFound):  # never in this context
            client.get_turns(context.context_id, before_turn_id=stranger)
        with pytest.raises(NotFound):
            client.heads("424242")
        with pytest.raises(BadRequest):
            client.heads(context.context_id, limit="x")  # type: ignore[arg-type]
        assert client.heads(other.context_id) == {"context_id": other.context_id, "heads": [], "next_before": None}


def test_a_fork_keeps_the_chain_below_its_fork_point_after_it_moves_away(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        origin = client.create_context()
        below = client.append_turn(origin.context_id, MESSAGE, data={"n": 1}).turn_id
        fork = client.fork_context(below)
        moved = client.append_turn(fork.context_id, MESSAGE, data={"n": "new root"}, parent_turn_id="0")
        assert moved.replaced_head_turn_id == below  # the fork point itself was the head
        assert reachable(client, fork.context_id) == {below, moved.turn_id}


def test_of_16_concurrent_appends_to_one_parent_every_turn_stays_reachable(store_url: str) -> None:
    server = LiveServer(store_url, "--workers", "2")
    try:
        with Client(server.url) as client:
            context = client.create_context()
            parent = client.append_turn(context.context_id, MESSAGE, data={"n": 0}).turn_id
        acknowledged = [outcome for outcome in at_once(server.url, 16, lambda own, n: own.append_turn(
            context.context_id, MESSAGE, data={"n": n}, parent_turn_id=parent).turn_id)
            if not isinstance(outcome, CxdbError)]
        assert len(acknowledged) == 16
        with Client(server.url) as client:
            assert reachable(client, context.context_id) == {parent, *acknowledged}
            assert len(client.heads(context.context_id, limit=100)["heads"]) == 15
    finally:
        assert server.stop() == 0
