"""Properties of the live streams, on each backend, through two workers: for random sequences of
creates, forks and appends (with and without explicit parents), the events a subscriber receives
across random disconnect-and-resume points are exactly the changes made, in commit order, with no gap
and no duplicate; and a follower of a context, reading and resuming at random points while its head
moves (rebases included), ends with exactly a fresh page of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb import Client
from tests.conftest import LiveServer
from tests.http.streams import Stream

MESSAGE = {"type_id": "t", "type_version": 1}
OPS = st.lists(st.tuples(st.sampled_from(["create", "fork", "append", "append_to_parent"]), st.integers(0, 10**6)),
               min_size=1, max_size=12)
CUTS = st.lists(st.integers(1, 6), max_size=4)


@pytest.fixture(scope="module")
def two_workers(module_store_url: str) -> Iterator[LiveServer]:
    server = LiveServer(module_store_url, "--workers", "2")
    yield server
    assert server.stop() == 0


@given(ops=OPS, cuts=CUTS)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_received_events_equal_the_changes_made(two_workers: LiveServer, ops: list[tuple[str, int]],
                                                cuts: list[int]) -> None:
    expected: list[tuple[str, str]] = []  # (kind, the context or turn id it names)
    with Client(two_workers.url) as client:
        start = int(client.stats()["newest_event_sequence"])
        contexts: list[str] = []
        turns: list[str] = []
        for op, pick in ops:
            client.close()  # a new connection for each change: the kernel spreads them over both workers
            if op == "create" or not contexts:
                contexts.append(client.create_context().context_id)
                expected.append(("context_created", contexts[-1]))
            elif op == "fork" and turns:
                contexts.append(client.fork_context(turns[pick % len(turns)]).context_id)
                expected.append(("context_created", contexts[-1]))
            else:
                parent = turns[pick % len(turns)] if op == "append_to_parent" and turns else None
                turn = client.append_turn(contexts[pick % len(contexts)], MESSAGE, data={"n": pick},
                                          parent_turn_id=parent)
                turns.append(turn.turn_id)
                expected.append(("turn_appended", turn.turn_id))
    received: list[tuple[str, str, str]] = []
    last = str(start)
    for cut in [*cuts, len(expected)]:  # read a few, hang up, resume with the last id seen
        if len(received) >= len(expected):
            break
        stream = Stream(two_workers.url, headers={"Last-Event-ID": last})
        try:
            for _ in range(min(cut, len(expected) - len(received))):
                event = stream.event()
                named = event["data"]["turn_id"] if event["event"] == "turn_appended" else event["data"]["context_id"]
                received.append((event["id"], event["event"], named))
                last = event["id"]
        finally:
            stream.close()
    assert [int(event_id) for event_id, _, _ in received] == list(range(start + 1, start + 1 + len(expected)))
    assert [(kind, named) for _, kind, named in received] == expected


FOLLOW_OPS = st.lists(st.tuples(st.sampled_from(["append", "regenerate", "graft", "elsewhere", "resume"]),
                                st.integers(0, 10**6)), min_size=1, max_size=14)


def catch_up(stream: Stream, view: list[dict[str, Any]], head: str) -> str | None:
    """Read the follow stream until the view ends at ``head``; the last id read."""
    last = None
    while (view[-1]["turn_id"] if view else "0") != head:
        event = stream.event()
        last = event["id"]
        if event["event"] == "rebase":
            keep = event["data"]["common_ancestor_turn_id"]
            assert keep == event["id"]
            ids = [turn["turn_id"] for turn in view]
            assert keep == "0" or keep in ids, "a rebase names a turn the follower does not hold"
            del view[ids.index(keep) + 1 if keep != "0" else 0:]
        else:
            assert event["event"] == "turn" and event["id"] == event["data"]["turn_id"]
            assert event["data"]["parent_turn_id"] == (view[-1]["turn_id"] if view else "0")
            view.append(event["data"])
    return last


@given(ops=FOLLOW_OPS)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_follower_ends_with_a_fresh_page(two_workers: LiveServer, ops: list[tuple[str, int]]) -> None:
    with Client(two_workers.url) as client:
        followed = client.create_context().context_id
        other = client.create_context().context_id
        mine: list[str] = []  # every turn appended to the followed context
        theirs = [client.append_turn(other, MESSAGE, data={"n": -1}).turn_id]
        view: list[dict[str, Any]] = []
        last = "0"
        url = f"/v1/contexts/{followed}/follow"
        stream = Stream(two_workers.url, f"?after_turn_id={last}", path=url)
        try:
            for op, pick in ops:
                client.close()  # a new connection for each change: the kernel spreads them over both workers
                if op == "resume":  # read to the head, hang up, come back with the last id seen
                    last = catch_up(stream, view, client.get_context(followed).head_turn_id) or last
                    stream.close()
                    stream = Stream(two_workers.url, headers={"Last-Event-ID": last}, path=url)
                    continue
                parent = None
                if op == "regenerate" and mine:  # from an earlier turn of its own: a rebase
                    parent = mine[pick % len(mine)]
                elif op == "graft":  # onto another context's turn, or a new root: a rebase past all of it
                    parent = [*theirs, "0"][pick % (len(theirs) + 1)]
                if op == "elsewhere":
                    theirs.append(client.append_turn(other, MESSAGE, data={"n": pick}).turn_id)
                else:
                    mine.append(client.append_turn(followed, MESSAGE, data={"n": pick},
                                                   parent_turn_id=parent).turn_id)
            catch_up(stream, view, client.get_context(followed).head_turn_id)
        finally:
            stream.close()
        page = list(reversed(list(client.iter_turns(followed))))
    assert view == page
