"""Both live streams over WebSocket, on live servers and each backend: one JSON text message per event,
the resume point as a query parameter, pings on idle connections, the stream limit, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from cxdb import AsyncClient
from tests.conftest import LiveServer

MESSAGE = {"type_id": "t", "type_version": 1}


async def message(socket: aiohttp.ClientWebSocketResponse) -> Any:
    received = await socket.receive(timeout=15)
    assert received.type == aiohttp.WSMsgType.TEXT, received
    return received.json()


async def test_events_replay_and_live_as_json_messages(live_server: LiveServer) -> None:
    async with AsyncClient(live_server.url) as client, aiohttp.ClientSession() as session:
        context = await client.create_context(client_tag="ws")
        first = await client.append_turn(context.context_id, MESSAGE, data={"n": 1})
        async with session.ws_connect(live_server.url + "/v1/events?after=0") as socket:
            created, appended = await message(socket), await message(socket)
            assert (created["event"], created["id"], created["data"]["client_tag"]) == ("context_created", "1", "ws")
            assert appended == {"event": "turn_appended", "id": "2", "data": {
                "context_id": context.context_id, "turn_id": first.turn_id, "parent_turn_id": "0", "depth": 1,
                "type_id": "t", "type_version": 1, "content_hash": first.content_hash}}
            later = await client.append_turn(context.context_id, MESSAGE, data={"n": 2})
            live = await message(socket)
            assert (live["id"], live["data"]["turn_id"]) == ("3", later.turn_id)


async def test_follow_over_a_websocket_equals_the_page(live_server: LiveServer) -> None:
    async with AsyncClient(live_server.url) as client, aiohttp.ClientSession() as session:
        context = await client.create_context()
        ids = [(await client.append_turn(context.context_id, MESSAGE, data={"n": n})).turn_id for n in range(3)]
        url = f"{live_server.url}/v1/contexts/{context.context_id}/follow?after_turn_id=0&view=raw"
        async with session.ws_connect(url) as socket:
            got = [await message(socket) for _ in range(3)]
            page = await client.get_turns(context.context_id, view="raw")
            assert [m["event"] for m in got] == ["turn"] * 3 and [m["id"] for m in got] == ids
            assert [m["data"] for m in got] == page["turns"]
            branch = await client.append_turn(context.context_id, MESSAGE, data={"n": "b"}, parent_turn_id=ids[0])
            assert await message(socket) == {"event": "rebase", "id": ids[0],
                                             "data": {"common_ancestor_turn_id": ids[0]}}
            assert (await message(socket))["data"]["turn_id"] == branch.turn_id
        # A browser's socket cannot send Last-Event-ID: last_event_id resumes, with the rebase it missed.
        regenerated = await client.append_turn(context.context_id, MESSAGE, data={"n": "c"}, parent_turn_id=ids[1])
        async with session.ws_connect(f"{url}&last_event_id={branch.turn_id}") as socket:
            assert await message(socket) == {"event": "rebase", "id": ids[0],
                                             "data": {"common_ancestor_turn_id": ids[0]}}
            assert [(await message(socket))["id"] for _ in range(2)] == [ids[1], regenerated.turn_id]


async def test_a_bad_request_is_refused_before_the_upgrade(live_server: LiveServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(live_server.url + "/v1/contexts/424242/follow")
        assert refused.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(live_server.url + "/v1/events?events=nothing")
        assert refused.value.status == 400


async def test_idle_sockets_are_pinged_and_a_closed_one_frees_its_place(store_url: str) -> None:
    server = LiveServer(store_url, "--event-heartbeat", "0.2", "--max-streams", "1")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url + "/v1/events", autoping=False) as socket:
                ping = await socket.receive(timeout=15)
                assert ping.type == aiohttp.WSMsgType.PING
                await socket.pong(ping.data)
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(server.url + "/v1/events")
                assert refused.value.status == 503
            for _ in range(200):  # the server notices the close and frees the place
                try:
                    async with session.ws_connect(server.url + "/v1/events"):
                        break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the closed socket's place was not freed")
    finally:
        assert server.stop() == 0


async def test_a_client_that_stops_answering_pings_is_closed(store_url: str) -> None:
    server = LiveServer(store_url, "--event-heartbeat", "0.2")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url + "/v1/events", autoping=False) as socket:
                kinds = []
                while True:  # pings go unanswered until the server gives up on the connection
                    received = await socket.receive(timeout=15)
                    kinds.append(received.type)
                    if received.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                         aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        break
                assert kinds[0] == aiohttp.WSMsgType.PING
    finally:
        assert server.stop() == 0


async def test_shutdown_closes_sockets_as_going_away(store_url: str) -> None:
    server = LiveServer(store_url, "--shutdown-grace", "86400")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.url + "/v1/events") as socket:
            stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
            received = await socket.receive(timeout=15)
            assert received.type == aiohttp.WSMsgType.CLOSE and received.data == aiohttp.WSCloseCode.GOING_AWAY
            assert await stopping == 0
