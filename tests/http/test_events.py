"""GET /v1/events on live servers, on each backend: replay then live, resume by Last-Event-ID or
?after across restarts, filters, reset past retention, heartbeats, --max-streams, bad input, workers."""

from __future__ import annotations

import json

import jsonschema
import pytest

from cxdb import Client
from cxdb.http.openapi import build_spec
from tests.conftest import BUNDLES, LiveServer, wait_until
from tests.http.streams import Stream

MESSAGE = {"type_id": "t", "type_version": 1}


def opens(url: str) -> bool:
    stream = Stream(url)
    try:
        return stream.status == 200
    finally:
        stream.close()


def test_replay_then_live_with_every_field(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        root = client.create_context(client_tag="demo")
        first = client.append_turn(root.context_id, MESSAGE, data={"n": 1})
        client.publish_bundle(BUNDLES / "conversation-v1.json")
        fork = client.fork_context(first.turn_id)
        stream = Stream(live_server.url, "?after=0")
        try:
            assert stream.status == 200 and stream.response.getheader("Content-Type") == "text/event-stream"
            assert stream.frame() == {"comments": [], "retry": "1000"}
            events = [stream.event() for _ in range(4)]
            assert [(e["id"], e["event"]) for e in events] == [
                ("1", "context_created"), ("2", "turn_appended"), ("3", "registry_published"), ("4", "context_created")]
            assert events[0]["data"]["context_id"] == root.context_id and events[0]["data"]["client_tag"] == "demo"
            assert events[0]["data"]["head_turn_id"] == "0" and "parent_context_id" not in events[0]["data"]
            assert events[1]["data"] == {"context_id": root.context_id, "turn_id": first.turn_id, "parent_turn_id": "0",
                                         "depth": 1, "type_id": "t", "type_version": 1,
                                         "content_hash": first.content_hash}
            assert events[2]["data"] == {"bundle_id": "conversation-v1"}
            assert events[3]["data"]["parent_context_id"] == root.context_id
            assert events[3]["data"]["head_turn_id"] == first.turn_id and events[3]["data"]["head_depth"] == 1
            assert events[3]["data"]["context_id"] == fork.context_id
            later = client.append_turn(fork.context_id, MESSAGE, data={"n": 2})  # live
            live = stream.event()
            assert live["id"] == "5" and live["data"]["turn_id"] == later.turn_id
            described = build_spec()["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
            for event in [*events, live]:  # each as the OpenAPI document describes an event of the stream
                jsonschema.validate({**event, "data": json.dumps(event["data"])} | {"comments": None},
                                    {**described["text/event-stream"]["schema"], "additionalProperties": True})
        finally:
            stream.close()
        stats = client.stats()  # the stats name the log's range
        assert (stats["oldest_event_sequence"], stats["newest_event_sequence"]) == ("1", "5")


def test_resume_by_header_or_query_and_live_only_without_either(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        for n in range(5):
            client.append_turn(context.context_id, MESSAGE, data={"n": n})
        for stream in (Stream(live_server.url, "?after=3"), Stream(live_server.url, headers={"Last-Event-ID": "3"}),
                       Stream(live_server.url, "?after=1", headers={"Last-Event-ID": "3"})):  # the header wins
            try:
                assert [stream.event()["id"] for _ in range(3)] == ["4", "5", "6"]
            finally:
                stream.close()
        live = Stream(live_server.url)
        try:
            assert live.frame()["retry"] == "1000"
            client.append_turn(context.context_id, MESSAGE, data={"n": 9})
            assert live.event()["id"] == "7"
        finally:
            live.close()


def test_filters_by_context_and_kind(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        a, b = client.create_context(), client.create_context()
        for n in range(3):
            client.append_turn(a.context_id, MESSAGE, data={"n": n})
            client.append_turn(b.context_id, MESSAGE, data={"n": n})
        client.publish_bundle(BUNDLES / "conversation-v1.json")
        stream = Stream(live_server.url, f"?after=0&context_id={b.context_id}&events=turn_appended")
        try:
            got = [stream.event() for _ in range(3)]
            assert {e["event"] for e in got} == {"turn_appended"}
            assert {e["data"]["context_id"] for e in got} == {b.context_id}
            assert [int(e["id"]) for e in got] == sorted(int(e["id"]) for e in got)
        finally:
            stream.close()
        both = Stream(live_server.url, f"?after=0&context_id={a.context_id}&context_id={b.context_id}"
                                       "&events=context_created")
        try:
            assert [both.event()["data"]["context_id"] for _ in range(2)] == [a.context_id, b.context_id]
        finally:
            both.close()


@pytest.mark.parametrize(("query", "headers", "parameter"), [
    ("?after=x", {}, "after"), ("?after=-1", {}, "after"), ("?events=bogus", {}, "events"),
    ("?events=", {}, "events"), ("?context_id=1.5", {}, "context_id"), ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
])
def test_bad_input_is_400_before_the_stream(live_server: LiveServer, query: str, headers: dict[str, str],
                                            parameter: str) -> None:
    stream = Stream(live_server.url, query, headers)
    try:
        body = json.loads(stream.response.read())
        assert stream.status == 400 and body["error"]["code"] == "BAD_REQUEST"
        assert body["error"]["details"]["parameter"] == parameter
    finally:
        stream.close()


def test_heartbeats_and_the_stream_limit(store_url: str) -> None:
    server = LiveServer(store_url, "--event-heartbeat", "0.2", "--max-streams", "2")
    try:
        first, second = Stream(server.url), Stream(server.url)
        third = Stream(server.url)
        try:
            body = json.loads(third.response.read())
            assert third.status == 503 and body["error"]["code"] == "TOO_MANY_STREAMS"
            assert third.response.getheader("Retry-After") == "1"
            first.frame()  # the retry hint
            assert first.frame()["comments"] == ["heartbeat"]
        finally:
            for stream in (first, second, third):
                stream.close()
        wait_until(lambda: opens(server.url), timeout=10)  # closed streams free their places
    finally:
        assert server.stop() == 0


def test_a_resume_point_past_retention_starts_with_reset(store_url: str) -> None:
    server = LiveServer(store_url, "--event-retention", "0.5")
    try:
        with Client(server.url) as client:
            context = client.create_context()
            client.append_turn(context.context_id, MESSAGE, data={"n": 1})
            wait_until(lambda: client.stats()["oldest_event_sequence"] == "0", timeout=20)  # both pruned
            client.append_turn(context.context_id, MESSAGE, data={"n": 2})
            stream = Stream(server.url, "?after=1")
            try:
                stream.frame()
                reset = stream.frame()
                assert reset["event"] == "reset" and "id" not in reset
                assert reset["data"] == {"oldest_sequence": "3"}
                assert stream.event()["id"] == "3"
            finally:
                stream.close()
    finally:
        assert server.stop() == 0


def test_events_survive_kill_9_and_resume_on_the_restarted_server(store_url: str) -> None:
    server = LiveServer(store_url)
    with Client(server.url) as client:
        context = client.create_context()
        acknowledged = [client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id for n in range(20)]
    server.kill()
    again = LiveServer(store_url)
    try:
        stream = Stream(again.url, "?after=1")
        try:
            assert [stream.event()["data"]["turn_id"] for _ in range(20)] == acknowledged
        finally:
            stream.close()
    finally:
        assert again.stop() == 0


def test_an_event_of_any_worker_reaches_a_stream_on_every_worker(store_url: str) -> None:
    server = LiveServer(store_url, "--workers", "2")
    try:
        streams = [Stream(server.url) for _ in range(6)]  # the kernel spreads them over both workers
        try:
            with Client(server.url) as client:
                context = client.create_context()
                appended = []
                for n in range(10):
                    client.close()  # a new connection each time: appends through both workers
                    appended.append(client.append_turn(context.context_id, MESSAGE, data={"n": n}).turn_id)
            for stream in streams:
                got = [stream.event() for _ in range(11)]
                assert [e["event"] for e in got] == ["context_created"] + ["turn_appended"] * 10
                assert [e["data"]["turn_id"] for e in got[1:]] == appended
                assert [int(e["id"]) for e in got] == list(range(int(got[0]["id"]), int(got[0]["id"]) + 11))
        finally:
            for stream in streams:
                stream.close()
    finally:
        assert server.stop() == 0


def test_shutdown_ends_streams_and_they_resume_on_the_next_server(store_url: str) -> None:
    # A grace of a day: a server that exits at all was not held by the open stream, which it ended.
    server = LiveServer(store_url, "--shutdown-grace", "86400")
    with Client(server.url) as client:
        context = client.create_context()
    stream = Stream(server.url, "?after=0")
    try:
        assert stream.event()["id"] == "1"
        assert server.stop() == 0
        with pytest.raises(AssertionError, match="the stream ended"):
            stream.frame()
    finally:
        stream.close()
    again = LiveServer(store_url)
    try:
        with Client(again.url) as client:
            client.append_turn(context.context_id, MESSAGE, data={"n": 1})
        resumed = Stream(again.url, headers={"Last-Event-ID": "1"})
        try:
            assert resumed.event()["id"] == "2"
        finally:
            resumed.close()
    finally:
        assert again.stop() == 0
