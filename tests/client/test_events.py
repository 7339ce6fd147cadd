"""Client.events and AsyncClient.events against live servers, on each backend: replay, live, filters,
and resuming after a server restart with nothing missed or repeated."""

from __future__ import annotations

import socket
from itertools import islice

import pytest

from cxdb import AsyncClient, BadRequest, Client
from tests.conftest import LiveServer

MESSAGE = {"type_id": "t", "type_version": 1}


def test_events_replay_then_follow_live(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        first = client.append_turn(context.context_id, MESSAGE, data={"n": 1})
        stream = client.events(after=0)
        assert [(e.event, e.id) for e in islice(stream, 2)] == [("context_created", "1"), ("turn_appended", "2")]
        later = client.append_turn(context.context_id, MESSAGE, data={"n": 2})
        event = next(stream)
        assert (event.event, event.id, event.data.turn_id) == ("turn_appended", "3", later.turn_id)
        stream.close()
        kinds = client.events(after=0, context_ids=[context.context_id], kinds=["turn_appended"])
        assert [e.data.turn_id for e in islice(kinds, 2)] == [first.turn_id, later.turn_id]
        kinds.close()
        with pytest.raises(BadRequest):
            next(client.events(kinds=["nothing"]))


def test_events_resume_across_a_server_restart(store_url: str) -> None:
    first = LiveServer(store_url)
    port = str(first.port)
    client = Client(first.url, timeout=10)
    context = client.create_context()
    stream = client.events(after=0)
    assert next(stream).id == "1"
    assert first.stop() == 0  # the stream ends with the server; the client reconnects with Last-Event-ID
    second = LiveServer(store_url, "--port", port)
    try:
        with Client(second.url) as other:
            appended = [other.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(3)]
        got = list(islice(stream, 3))
        assert [e.id for e in got] == ["2", "3", "4"] and [e.data.turn_id for e in got] == appended
    finally:
        stream.close()
        client.close()
        assert second.stop() == 0


async def test_async_events(live_server: LiveServer) -> None:
    async with AsyncClient(live_server.url) as client:
        context = await client.create_context()
        await client.append_turn(context.context_id, MESSAGE, data={"n": 1})
        stream = client.events(after=1)
        event = await anext(stream)
        assert event.event == "turn_appended" and event.id == "2"
        appended = await client.append_turn(context.context_id, MESSAGE, data={"n": 2})
        event = await anext(stream)
        assert event.id == "3" and event.data.turn_id == appended.turn_id
        await stream.aclose()


def test_without_reconnect_a_stopped_server_ends_the_iteration(store_url: str) -> None:
    server = LiveServer(store_url)
    with Client(server.url, timeout=10) as client:
        client.create_context()
        stream = client.events(after=0, reconnect=False)
        assert next(stream).id == "1"
        assert server.stop() == 0
        assert list(stream) == []
    with socket.socket() as probe:  # nothing listens there any more
        assert probe.connect_ex((server.host, server.port)) != 0
