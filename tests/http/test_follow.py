"""GET /v1/contexts/{id}/follow on live servers, on each backend: turns rendered exactly as pages
render them, replay by after_turn_id or tail then live, rebases, resume by Last-Event-ID, bad input,
the stream limit, and a follower on another worker."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from cxdb import Client
from cxdb.http.openapi import build_spec
from tests.conftest import BUNDLES, LiveServer
from tests.http.streams import Stream

MESSAGE = {"type_id": "t", "type_version": 1}
CONVERSATION = {"type_id": "cxdb.conversation.Message", "type_version": 1}


def follow(url: str, context_id: str, query: str = "", headers: dict[str, str] | None = None) -> Stream:
    return Stream(url, query, headers, path=f"/v1/contexts/{context_id}/follow")


def turns(stream: Stream, count: int) -> list[dict[str, Any]]:
    got = [stream.event() for _ in range(count)]
    assert all(event["event"] == "turn" and event["id"] == event["data"]["turn_id"] for event in got), got
    return [event["data"] for event in got]


def fresh_page(client: Client, context_id: str, **options: Any) -> list[dict[str, Any]]:
    return list(reversed(list(client.iter_turns(context_id, **options))))


def test_replay_after_a_turn_then_live_rendered_as_pages_render(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        client.publish_bundle(BUNDLES / "conversation-v1.json")
        context = client.create_context()
        sent = [client.append_turn(context.context_id, CONVERSATION, data={"role": "user", "text": f"hi {n}"})
                for n in range(5)]
        query = "view=both&bytes_render=hex&time_render=unix_ms&include_unknown=true"
        options = {"view": "both", "bytes_render": "hex", "time_render": "unix_ms", "include_unknown": "true"}
        stream = follow(live_server.url, context.context_id, f"?after_turn_id={sent[1].turn_id}&{query}")
        try:
            assert stream.status == 200 and stream.response.getheader("Content-Type") == "text/event-stream"
            assert stream.frame()["retry"] == "1000"
            page = fresh_page(client, context.context_id, **options)
            raw = [stream.event() for _ in range(3)]
            assert [event["data"] for event in raw] == page[2:]
            described = build_spec()["paths"]["/v1/contexts/{context_id}/follow"]["get"]["responses"]["200"]
            for event in raw:  # each as the OpenAPI document describes an event of the stream
                jsonschema.validate({**event, "data": json.dumps(event["data"])} | {"comments": None},
                                    {**described["content"]["text/event-stream"]["schema"],
                                     "additionalProperties": True})
            live = client.append_turn(context.context_id, CONVERSATION, data={"role": "assistant", "text": "yo"})
            got = turns(stream, 1)
            assert got[0]["turn_id"] == live.turn_id and got == fresh_page(client, context.context_id, **options)[5:]
            assert got[0]["data"]["role"] in ("assistant", 2)  # typed: the registry's view of the turn
        finally:
            stream.close()


def test_tail_and_from_the_start_and_live_only(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        ids = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(150)]
        everything = follow(live_server.url, context.context_id, "?after_turn_id=0")  # more than a step's batch
        tail = follow(live_server.url, context.context_id, "?tail=2")
        live = follow(live_server.url, context.context_id)
        try:
            assert [turn["turn_id"] for turn in turns(everything, 150)] == ids
            assert [turn["turn_id"] for turn in turns(tail, 2)] == ids[-2:]
            later = client.append_turn(context.context_id, MESSAGE, data={"n": "live"}).turn_id
            for stream in (everything, tail, live):
                assert [turn["turn_id"] for turn in turns(stream, 1)] == [later]
        finally:
            for stream in (everything, tail, live):
                stream.close()


def test_a_head_moved_elsewhere_is_a_rebase_and_the_view_equals_a_fresh_page(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        ids = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(4)]
        stream = follow(live_server.url, context.context_id, "?after_turn_id=0")
        try:
            view = turns(stream, 4)
            branch = client.append_turn(context.context_id, MESSAGE, data={"n": "b"}, parent_turn_id=ids[1])
            rebase = stream.event()
            assert rebase["event"] == "rebase" and rebase["data"] == {"common_ancestor_turn_id": ids[1]}
            assert rebase["id"] == ids[1]
            view = view[:2] + turns(stream, 1)
            assert view[-1]["turn_id"] == branch.turn_id
            assert view == fresh_page(client, context.context_id)
            # A new root (parent 0) shares nothing with the chain sent: the rebase names turn 0.
            root = client.append_turn(context.context_id, MESSAGE, data={"n": "r"}, parent_turn_id="0")
            rebase = stream.event()
            assert rebase["event"] == "rebase" and rebase["data"] == {"common_ancestor_turn_id": "0"}
            assert [turn["turn_id"] for turn in turns(stream, 1)] == [root.turn_id]
        finally:
            stream.close()


def test_a_client_resuming_after_the_head_moved_away_gets_the_rebase(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        ids = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(3)]
        other = client.append_turn(context.context_id, MESSAGE, data={"n": "x"}, parent_turn_id=ids[0]).turn_id
        stream = follow(live_server.url, context.context_id, headers={"Last-Event-ID": ids[2]})
        try:
            rebase = stream.event()
            assert (rebase["event"], rebase["data"]) == ("rebase", {"common_ancestor_turn_id": ids[0]})
            assert [turn["turn_id"] for turn in turns(stream, 1)] == [other]
        finally:
            stream.close()
        resumed = follow(live_server.url, context.context_id, headers={"Last-Event-ID": ids[0]})
        try:  # a resume point on the chain simply continues
            assert [turn["turn_id"] for turn in turns(resumed, 1)] == [other]
        finally:
            resumed.close()
        # Given as a parameter, a turn off the chain is a 404, as a page's cursor is.
        off = follow(live_server.url, context.context_id, f"?after_turn_id={ids[2]}")
        try:
            body = json.loads(off.response.read())
            assert off.status == 404 and body["error"]["code"] == "NOT_FOUND"
            details = body["error"]["details"]
            assert (details["after_turn_id"], details["context_id"]) == (ids[2], context.context_id)
        finally:
            off.close()


@pytest.mark.parametrize(("path", "query", "status", "code"), [
    ("999999", "", 404, "NOT_FOUND"),
    ("nope", "", 400, "BAD_REQUEST"),
    ("{context}", "?after_turn_id=999999", 404, "NOT_FOUND"),
    ("{context}", "?after_turn_id=x", 400, "BAD_REQUEST"),
    ("{context}", "?tail=-1", 400, "BAD_REQUEST"),
    ("{context}", "?tail=1&after_turn_id=0", 400, "BAD_REQUEST"),
    ("{context}", "?view=sideways", 400, "BAD_REQUEST"),
    ("{context}", "?bytes_render=roman", 400, "BAD_REQUEST"),
    ("{context}", "?type_hint_mode=explicit", 422, "UNPROCESSABLE_ENTITY"),
    ("{context}", "?type_hint_mode=explicit&as_type_id=no.Such&as_type_version=1", 424, "FAILED_DEPENDENCY"),
])
def test_bad_input_is_an_error_before_the_stream(live_server: LiveServer, path: str, query: str, status: int,
                                                 code: str) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        client.append_turn(context.context_id, MESSAGE, data={"n": 1})
    stream = follow(live_server.url, path.format(context=context.context_id), query)
    try:
        body = json.loads(stream.response.read())
        assert stream.status == status and body["error"]["code"] == code
    finally:
        stream.close()


def test_follow_streams_count_against_the_limit_and_heartbeat(store_url: str) -> None:
    server = LiveServer(store_url, "--event-heartbeat", "0.2", "--max-streams", "1")
    try:
        with Client(server.url) as client:
            context = client.create_context()
        first = follow(server.url, context.context_id)
        second = Stream(server.url)
        try:
            body = json.loads(second.response.read())
            assert second.status == 503 and body["error"]["code"] == "TOO_MANY_STREAMS"
            first.frame()
            assert first.frame()["comments"] == ["heartbeat"]
        finally:
            first.close()
            second.close()
    finally:
        assert server.stop() == 0


def test_a_follower_on_one_worker_sees_appends_through_the_other(store_url: str) -> None:
    server = LiveServer(store_url, "--workers", "2")
    try:
        with Client(server.url) as client:
            context = client.create_context()
            streams = [follow(server.url, context.context_id) for _ in range(6)]  # spread over both workers
            try:
                appended = []
                for n in range(10):
                    client.close()  # a new connection each time: appends through both workers
                    appended.append(client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id)
                for stream in streams:
                    assert [turn["turn_id"] for turn in turns(stream, 10)] == appended
            finally:
                for stream in streams:
                    stream.close()
    finally:
        assert server.stop() == 0


def test_every_acknowledged_turn_is_followed_after_kill_9_and_shutdown_ends_the_stream(store_url: str) -> None:
    server = LiveServer(store_url)
    with Client(server.url) as client:
        context = client.create_context()
        acknowledged = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(20)]
    server.kill()
    # A grace of a day: a server that exits at all was not held by the open stream, which it ended.
    again = LiveServer(store_url, "--shutdown-grace", "86400")
    stream = follow(again.url, context.context_id, "?after_turn_id=0")
    try:
        assert [turn["turn_id"] for turn in turns(stream, 20)] == acknowledged
        assert again.stop() == 0
        with pytest.raises(AssertionError, match="the stream ended"):
            stream.frame()
    finally:
        stream.close()
