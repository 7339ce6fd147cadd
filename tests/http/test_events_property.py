"""A property of the event stream, on each backend, through two workers: for random sequences of
creates, forks and appends (with and without explicit parents), the events a subscriber receives
across random disconnect-and-resume points are exactly the changes made, in commit order, with no gap
and no duplicate."""

from __future__ import annotations

from collections.abc import Iterator

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
