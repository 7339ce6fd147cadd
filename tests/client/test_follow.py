"""Client.follow and AsyncClient.follow against live servers, on each backend: turns as pages render
them, rebases, a bad start point, and resuming across a server restart with nothing missed or
repeated, even when the drop comes before the first turn."""

from __future__ import annotations

import threading
from itertools import islice

import pytest

from cxdb import AsyncClient, Client, NotFound, Rebase, Turn
from tests.conftest import LiveServer, wait_until
from tests.test_metrics import scrape, value

MESSAGE = {"type_id": "t", "type_version": 1}


def test_follow_yields_turns_as_pages_render_them_and_rebases(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        ids = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(3)]
        stream = client.follow(context.context_id, after_turn_id=0, view="both")
        got = list(islice(stream, 3))
        assert all(isinstance(turn, Turn) for turn in got)
        assert got == client.get_turns(context.context_id, view="both")["turns"]
        branch = client.append_turn(context.context_id, MESSAGE, data={"n": "b"}, parent_turn_id=ids[0])
        rebase, turn = next(stream), next(stream)
        assert isinstance(rebase, Rebase) and rebase.common_ancestor_turn_id == ids[0]
        assert isinstance(turn, Turn) and turn.turn_id == branch.turn_id and turn.bytes_b64
        stream.close()
        tail = client.follow(context.context_id, tail=1)
        assert next(tail).turn_id == branch.turn_id
        tail.close()
        with pytest.raises(NotFound):
            next(client.follow(context.context_id, after_turn_id=ids[2]))  # off the chain


def test_follow_resumes_across_a_restart_even_before_its_first_turn(store_url: str) -> None:
    first = LiveServer(store_url)
    port = str(first.port)
    client = Client(first.url, timeout=10)
    context = client.create_context()
    old = client.append_turn(context.context_id, MESSAGE, data={"n": "old"}).turn_id
    stream = client.follow(context.context_id, after_turn_id=old)
    later = client.append_turn(context.context_id, MESSAGE, data={"n": 0}).turn_id
    assert next(stream).turn_id == later
    assert first.stop() == 0
    second = LiveServer(store_url, "--port", port)
    try:
        with Client(second.url) as other:
            appended = [other.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(1, 4)]
        assert [turn.turn_id for turn in islice(stream, 3)] == appended
    finally:
        stream.close()
        client.close()
        assert second.stop() == 0

    # A follower that got nothing yet when its connection dropped resumes from the head it started at.
    third = LiveServer(store_url, "--port", port)
    idle = Client(third.url, timeout=10)
    quiet = idle.follow(context.context_id)
    got: list[Turn | Rebase] = []
    reader = threading.Thread(target=lambda: got.append(next(quiet)))
    reader.start()
    wait_until(lambda: value(scrape(third), "cxdb_streams_open") == 1)
    assert third.stop() == 0
    elsewhere = LiveServer(store_url)  # another port: the follower cannot reconnect before the append
    with Client(elsewhere.url) as other:
        missed = other.append_turn(context.context_id, MESSAGE, data={"n": "meanwhile"}).turn_id
    assert elsewhere.stop() == 0
    fourth = LiveServer(store_url, "--port", port)
    try:
        reader.join(timeout=30)
        assert [turn.turn_id for turn in got] == [missed]
    finally:
        quiet.close()
        idle.close()
        assert fourth.stop() == 0


async def test_async_follow(live_server: LiveServer) -> None:
    async with AsyncClient(live_server.url) as client:
        context = await client.create_context()
        stream = client.follow(context.context_id, after_turn_id=context.head_turn_id, view="raw")
        first = await client.append_turn(context.context_id, MESSAGE, data={"n": 1})
        turn = await anext(stream)
        assert isinstance(turn, Turn) and turn.turn_id == first.turn_id and "data" not in turn
        await stream.aclose()
