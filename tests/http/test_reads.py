"""Reads agents need, on live servers and each backend: string_limit on pages and follows, exact
turns by turn_id, and a context's provenance."""

from __future__ import annotations

import base64
import json

import pytest

from cxdb import BadRequest, Client, NotFound
from tests.conftest import BUNDLES, LiveServer
from tests.http.streams import Stream

MESSAGE = {"type_id": "cxdb.chat.Message", "type_version": 2}
TEXT = "héllo wörld, " * 20
ARGUMENT = "ü" * 50
ATTACHMENT = base64.b64encode(bytes(range(64))).decode()


def conversation(client: Client) -> tuple[str, str]:
    client.publish_bundle(BUNDLES / "conversation-v2.json")
    context = client.create_context(provenance={"agent": "tester", "run": 7})
    turn = client.append_turn(context.context_id, MESSAGE, data={
        "role": "user", "text": TEXT, "attachments": [ATTACHMENT],
        "tool_calls": [{"id": "c1", "name": "search",
                        "arguments": {"q": ARGUMENT, "short": "ok", "deep": [ARGUMENT]}}]})
    return context.context_id, turn.turn_id


def test_string_limit_cuts_strings_at_a_character_boundary_and_lists_them(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context_id, _ = conversation(client)
        turn = client.get_turns(context_id, string_limit=2)["turns"][0]
        assert turn["data"]["text"] == "h"  # "é" takes bytes 2 and 3: it is not cut in half
        assert turn["truncated"] == ["text", "tool_calls[0].name", "tool_calls[0].arguments.q",
                                     "tool_calls[0].arguments.deep[0]"]  # "c1" and "ok" fit in 2 bytes
        assert turn["data"]["tool_calls"][0]["arguments"]["short"] == "ok"
        assert turn["data"]["attachments"] == [ATTACHMENT]  # bytes are never cut
        assert turn["data"]["role"] == "user"  # nor what rendering makes
        wide = client.get_turns(context_id, string_limit=101)["turns"][0]
        assert wide["data"]["tool_calls"][0]["arguments"]["q"] == ARGUMENT  # 100 bytes: whole
        assert wide["data"]["text"] == TEXT[:101].encode()[:101].decode("utf-8", "ignore")
        assert len(wide["data"]["text"].encode()) <= 101 and wide["truncated"] == ["text"]
        whole = client.get_turns(context_id)["turns"][0]
        assert "truncated" not in whole and whole["data"]["text"] == TEXT
        for bad in ("0", "65537", "x", "-1"):
            with pytest.raises(BadRequest):
                client.get_turns(context_id, string_limit=bad)


def test_a_follower_gets_cut_strings_too(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context_id, turn_id = conversation(client)
    stream = Stream(live_server.url, "?after_turn_id=0&string_limit=4", path=f"/v1/contexts/{context_id}/follow")
    try:
        event = stream.event()
        assert event["id"] == turn_id and event["data"]["data"]["text"] == "hél"
        assert event["data"]["truncated"][0] == "text"
    finally:
        stream.close()


def test_an_exact_turn_is_whole_and_must_belong_to_the_context(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context_id, first = conversation(client)
        second = client.append_turn(context_id, MESSAGE, data={"role": "assistant", "text": "yes"}).turn_id
        assert client.get_turn(context_id, first, view="raw")["bytes_b64"]
        page = client.get_turns(context_id, turn_id=first, string_limit=3, view="both")
        assert [turn["turn_id"] for turn in page["turns"]] == [first] and page["next_before_turn_id"] is None
        assert page["turns"][0]["data"]["text"] == TEXT and "truncated" not in page["turns"][0]
        assert page["turns"][0] == client.get_turns(context_id, view="both", limit=2)["turns"][0]
        assert page["meta"]["head_turn_id"] == second
        other = client.create_context()
        elsewhere = client.append_turn(other.context_id, MESSAGE, data={"role": "user"}).turn_id
        for context, turn in ((context_id, elsewhere), (context_id, "999999"), (context_id, "0"),
                              (other.context_id, first), ("424242", first)):
            with pytest.raises(NotFound):
                client.get_turns(context, turn_id=turn)
        fork = client.fork_context(first)  # a fork's chain holds the turns below its fork point
        assert client.get_turns(fork.context_id, turn_id=first)["turns"][0]["turn_id"] == first
        with pytest.raises(BadRequest):
            client.get_turns(context_id, turn_id=first, before_turn_id=second)
        for bad in ("x", "", "-1"):
            with pytest.raises(BadRequest):
                client.get_turns(context_id, turn_id=bad)


def test_provenance(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context_id, _ = conversation(client)
        bare = client.create_context()
        found = client.provenance(context_id)
        assert found == {"context_id": context_id, "provenance": {"agent": "tester", "run": 7}}
        assert client.provenance(bare.context_id) == {"context_id": bare.context_id, "provenance": None}
        with pytest.raises(NotFound) as missing:
            client.provenance("424242")
        assert json.dumps(missing.value.details)  # the envelope's details, as every 404
