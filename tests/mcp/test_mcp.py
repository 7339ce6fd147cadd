"""/mcp with the official MCP SDK's client (Streamable HTTP), against a live server on each backend:
the handshake, every tool with its schemas, errors, resources and subscriptions, tokens, scopes and
namespaces, sessions and their bounds, rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cxdb import Client
from tests.conftest import REPO, LiveServer, wait_until

mcp = pytest.importorskip("mcp", reason="the test extra installs the official MCP SDK")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

BOOT = "mcp-tests-bootstrap-token-0123456789abcdef"
# resources/subscribe is the subscription of the handshake revisions served here; the SDK warns that the
# 2026-07-28 revision replaced it.
pytestmark = pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")


@contextlib.asynccontextmanager
async def connect(url: str, token: str | None = None,
                  notes: asyncio.Queue[Any] | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else None

    async def on_message(message: Any) -> None:
        if notes is not None and not isinstance(message, Exception):
            notes.put_nowait(message)

    async with create_mcp_http_client(headers=headers) as http, \
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write), \
            ClientSession(read, write, message_handler=on_message) as session:
        await session.initialize()
        yield session


def raw(url: str, body: Any, headers: dict[str, str] | None = None,
        method: str = "POST") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(f"{url}/mcp", data=json.dumps(body).encode() if body is not None else None,
                                     method=method, headers={"Content-Type": "application/json",
                                                             "Accept": "application/json, text/event-stream",
                                                             **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read()
            return reply.status, dict(reply.headers), json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read()
            return exc.code, dict(exc.headers), json.loads(text) if text else None


def initialize(url: str, version: str = "2025-11-25", headers: dict[str, str] | None = None) -> tuple[str, Any]:
    status, got, body = raw(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}, headers)
    assert status == 200, body
    return got["Mcp-Session-Id"], body["result"]


async def test_every_tool_works_with_the_sdk_client_and_its_schemas(server: LiveServer) -> None:
    async with connect(server.url) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"list_contexts", "get_context", "get_turns", "get_turn", "get_provenance",
                              "create_context", "fork_context", "append_turn", "append_message", "list_types",
                              "get_type"}
        for tool in tools.values():
            assert tool.description and tool.input_schema["type"] == "object" and tool.output_schema

        async def call(name: str, **args: Any) -> Any:
            result = await session.call_tool(name, args)  # the client checks structuredContent against the schema
            assert not result.is_error, result.content
            assert json.loads(result.content[0].text) == result.structured_content
            return result.structured_content

        made = await call("create_context", client_tag="mcp/tools", provenance={"agent": "test"})
        context_id = made["context_id"]
        types_before = {t["type_id"] for t in (await call("list_types"))["types"]}
        first = await call("append_message", context_id=context_id, role="user", text="Hello")
        assert "cxdb.chat.Message" in {t["type_id"] for t in (await call("list_types"))["types"]}
        assert "cxdb.chat.Message" not in types_before or True
        second = await call("append_turn", context_id=context_id, type_id="cxdb.chat.Message", type_version=1,
                            data={"role": "assistant", "text": "Hi! " + "x" * 300},
                            expected_head_turn_id=first["turn_id"], idempotency_key="k1")
        again = await call("append_turn", context_id=context_id, type_id="cxdb.chat.Message", type_version=1,
                           data={"role": "assistant", "text": "Hi! " + "x" * 300},
                           expected_head_turn_id=first["turn_id"], idempotency_key="k1")
        assert again["turn_id"] == second["turn_id"]
        page = await call("get_turns", context_id=context_id, limit=10, string_limit=20)
        assert [t["data"]["role"] for t in page["turns"]] == ["user", "assistant"]
        assert page["turns"][1]["truncated"] == ["text"]
        whole = await call("get_turn", context_id=context_id, turn_id=second["turn_id"])
        assert len(whole["turns"][0]["data"]["text"]) == 304
        assert (await call("get_context", context_id=context_id))["head_depth"] == 2
        assert (await call("get_provenance", context_id=context_id))["provenance"] == {"agent": "test"}
        fork = await call("fork_context", base_turn_id=first["turn_id"], client_tag="mcp/tools")
        assert fork["lineage"]["parent_context_id"] == context_id
        listed = await call("list_contexts", tag_prefix="mcp/tools", limit=10)
        assert {c["context_id"] for c in listed["contexts"]} == {context_id, fork["context_id"]}
        message_type = await call("get_type", type_id="cxdb.chat.Message", type_version=1)
        assert message_type["fields"]["1"]["name"] == "role"


async def test_errors_are_tool_errors_with_the_envelope_and_nothing_internal(server: LiveServer) -> None:
    async with connect(server.url) as session:
        missing = await session.call_tool("get_context", {"context_id": "987654321"})
        assert missing.is_error and missing.structured_content["error"]["code"] == "NOT_FOUND"
        assert missing.content[0].text == "NOT_FOUND: Context 987654321 not found"
        bad = await session.call_tool("append_message", {"context_id": "1", "role": "wizard", "text": "x"})
        assert bad.is_error and bad.structured_content["error"]["details"]["field"] == "role"
        moved = await session.call_tool("create_context", {})
        cid = moved.structured_content["context_id"]
        await session.call_tool("append_message", {"context_id": cid, "role": "user", "text": "a"})
        conflict = await session.call_tool("append_message", {"context_id": cid, "role": "user", "text": "b",
                                                              "expected_head_turn_id": "0"})
        assert conflict.is_error and conflict.structured_content["error"]["details"]["reason"] == "head_moved"
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("drop_database", {})
        assert unknown.value.error.code == -32602
        for result in (missing, bad, conflict):
            assert "Traceback" not in result.content[0].text and "File \"" not in result.content[0].text


async def test_a_subscriber_hears_of_another_agents_turn(server: LiveServer) -> None:
    notes: asyncio.Queue[Any] = asyncio.Queue()
    with Client(server.url) as http:
        context_id = str(http.create_context(client_tag="mcp/sub").context_id)
        other = str(http.create_context(client_tag="mcp/sub").context_id)
        async with connect(server.url, notes=notes) as session:
            resources = await session.list_resource_templates()
            assert resources.resource_templates[0].uri_template == "cxdb://contexts/{context_id}"
            uri = f"cxdb://contexts/{context_id}"
            await session.subscribe_resource(uri)
            await asyncio.sleep(0.3)  # the GET stream opens after initialize
            http.append_turn(other, type_id="t", type_version=1, data={"n": 0})  # not subscribed: no note
            http.append_turn(context_id, type_id="t", type_version=1, data={"n": 1})
            note = await asyncio.wait_for(notes.get(), 10)
            assert note.method == "notifications/resources/updated" and note.params.uri == uri
            read = await session.read_resource(uri)
            page = json.loads(read.contents[0].text)
            assert page["meta"]["context_id"] == context_id and page["turns"][0]["data"] == {"n": 1}
            await session.unsubscribe_resource(uri)
            http.append_turn(context_id, type_id="t", type_version=1, data={"n": 2})
            # No note for that turn: a later one, on a context subscribed after it, comes first (a
            # session hears of the store's changes in the order they were made).
            marker = f"cxdb://contexts/{other}"
            await session.subscribe_resource(marker)
            http.append_turn(other, type_id="t", type_version=1, data={"n": 3})
            note = await asyncio.wait_for(notes.get(), 10)
            assert note.params.uri == marker
            await session.unsubscribe_resource(marker)
            listed = await session.list_resources()
            assert uri in {str(resource.uri) for resource in listed.resources}
            with pytest.raises(MCPError):
                await session.subscribe_resource("cxdb://contexts/987654321")
            with pytest.raises(MCPError):
                await session.read_resource("https://example.com/")


def test_the_handshake_revisions_and_sessions(server: LiveServer) -> None:
    for version in ("2025-11-25", "2025-06-18", "2025-03-26"):
        session_id, result = initialize(server.url, version)
        assert result["protocolVersion"] == version and result["capabilities"]["resources"]["subscribe"]
    _, result = initialize(server.url, "1999-01-01")
    assert result["protocolVersion"] == "2025-11-25"  # the newest, for the client to accept or not
    session_id, _ = initialize(server.url, "2025-03-26")
    headers = {"Mcp-Session-Id": session_id}
    status, _, batch = raw(server.url, [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                        {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}], headers)
    assert status == 200 and [reply["id"] for reply in batch] == [1, 2]  # batches: 2025-03-26 only
    session_id, _ = initialize(server.url)
    headers = {"Mcp-Session-Id": session_id}
    assert raw(server.url, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], headers)[0] == 400
    assert raw(server.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)[0] == 202
    assert raw(server.url, {"jsonrpc": "2.0", "id": 3, "method": "ping"})[0] == 400  # no session
    assert raw(server.url, {"jsonrpc": "2.0", "id": 3, "method": "ping"}, {"Mcp-Session-Id": "nope"})[0] == 404
    assert raw(server.url, {"jsonrpc": "2.0", "id": 3, "method": "ping"},
               {**headers, "MCP-Protocol-Version": "1999-01-01"})[0] == 400
    status, _, reply = raw(server.url, {"jsonrpc": "2.0", "id": 4, "method": "no/such"}, headers)
    assert status == 200 and reply["error"]["code"] == -32601
    status, _, reply = raw(server.url, {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": []}, headers)
    assert reply["error"]["code"] == -32602
    assert raw(server.url, None, headers, method="DELETE")[0] == 204
    assert raw(server.url, {"jsonrpc": "2.0", "id": 6, "method": "ping"}, headers)[0] == 404  # ended


def test_tokens_scopes_and_namespaces_reach_mcp(module_store_url: str) -> None:
    live = LiveServer(module_store_url, "--auth", "tokens", "--rate-limit", "40/s",
                      env={"CXDB_BOOTSTRAP_TOKEN": BOOT})
    try:
        with Client(live.url, token=BOOT) as admin:
            reader = admin.create_token("cxdb:read").token
            writer_a = admin.create_token("cxdb:write", namespace="mcp-a/").token
            other = str(admin.create_context(client_tag="mcp-b/secret").context_id)
        assert raw(live.url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})[0] == 401

        async def scenario() -> None:
            async with connect(live.url, reader) as session:
                assert not (await session.call_tool("list_contexts", {})).is_error
                with pytest.raises(MCPError) as refused:
                    await session.call_tool("create_context", {})
                assert refused.value.error.code == -32003
                assert refused.value.error.data == {"required_scope": "cxdb:write"}
            async with connect(live.url, writer_a) as session:
                made = await session.call_tool("create_context", {"client_tag": "mcp-a/one"})
                assert not made.is_error
                outside = await session.call_tool("create_context", {"client_tag": "mcp-b/x"})
                assert outside.is_error and outside.structured_content["error"]["code"] == "UNPROCESSABLE_ENTITY"
                listed = (await session.call_tool("list_contexts", {})).structured_content
                assert [c["client_tag"] for c in listed["contexts"]] == ["mcp-a/one"] and listed["total"] == 1
                hidden = await session.call_tool("get_turns", {"context_id": other})
                assert hidden.is_error and hidden.structured_content["error"]["code"] == "NOT_FOUND"
                resources = await session.list_resources()
                assert [str(r.uri) for r in resources.resources] == [f"cxdb://contexts/{made.structured_content['context_id']}"]
                with pytest.raises(MCPError):
                    await session.read_resource(f"cxdb://contexts/{other}")
                with pytest.raises(MCPError):
                    await session.subscribe_resource(f"cxdb://contexts/{other}")

        asyncio.run(scenario())
        # A session belongs to the token that opened it.
        session_id, _ = initialize(live.url, headers={"Authorization": f"Bearer {reader}"})
        stolen = raw(live.url, {"jsonrpc": "2.0", "id": 2, "method": "ping"},
                     {"Authorization": f"Bearer {writer_a}", "Mcp-Session-Id": session_id})
        assert stolen[0] == 404
    finally:
        live.stop()
    assert reader not in live.stderr_text and writer_a not in live.stderr_text


def test_malformed_messages_are_4xx_or_json_rpc_errors_never_5xx(server: LiveServer) -> None:
    session_id, _ = initialize(server.url)
    headers = {"Mcp-Session-Id": session_id}
    request = urllib.request.Request(f"{server.url}/mcp", data=b"{not json", method="POST", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as broken:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback
    assert broken.value.code == 400
    broken.value.close()
    for body in ([], {"jsonrpc": "1.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 1},
                 {"jsonrpc": "2.0", "id": 1, "method": 7}, "ping", 12,
                 {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": 5}},
                 {"jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {"cursor": "zz"}},
                 {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_turns",
                                                                               "arguments": {"context_id": "x"}}}):
        status, _, reply = raw(server.url, body, headers)
        assert status < 500, (body, status, reply)
        if status == 200:
            assert "error" in reply or reply["result"].get("isError"), (body, reply)


def test_a_subscriber_hears_of_a_turn_appended_through_another_server(module_store_url: str,
                                                                       server: LiveServer) -> None:
    """The subscriber's server learns of the turn from the durable event log, not from the append."""
    notes: asyncio.Queue[Any] = asyncio.Queue()
    other = LiveServer(module_store_url)
    try:
        with Client(other.url) as http:
            context_id = str(http.create_context(client_tag="mcp/across").context_id)

            async def scenario() -> None:
                async with connect(server.url, notes=notes) as session:
                    await session.subscribe_resource(f"cxdb://contexts/{context_id}")
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(http.append_turn, context_id, type_id="t", type_version=1, data={})
                    note = await asyncio.wait_for(notes.get(), 10)  # bench/mcp.py measures how soon
                    assert note.params.uri == f"cxdb://contexts/{context_id}"

            asyncio.run(scenario())
    finally:
        other.stop()


def test_streams_count_against_max_streams_and_rate_limits_apply(module_store_url: str) -> None:
    live = LiveServer(module_store_url, "--max-streams", "1", "--event-heartbeat", "0.5")
    try:
        session_id, _ = initialize(live.url)
        opened = urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
            f"{live.url}/mcp", headers={"Mcp-Session-Id": session_id, "Accept": "text/event-stream"}), timeout=10)
        assert opened.status == 200 and opened.headers["Content-Type"] == "text/event-stream"
        second = raw(live.url, None, {"Mcp-Session-Id": session_id, "Accept": "text/event-stream"}, method="GET")
        assert second[0] == 503 and second[2]["error"]["code"] == "TOO_MANY_STREAMS"
        opened.close()  # a client that drops its stream: the slot comes back
        for _ in range(100):
            try:
                urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
                    f"{live.url}/mcp", headers={"Mcp-Session-Id": session_id, "Accept": "text/event-stream"}),
                    timeout=10).close()
                break
            except urllib.error.HTTPError as exc:
                exc.close()
                assert exc.code == 503
                time.sleep(0.1)
        else:
            raise AssertionError("the dropped stream's slot never came back")
    finally:
        live.stop()
    live = LiveServer(module_store_url, "--rate-limit", "2/min")
    try:
        session_id, _ = initialize(live.url)
        statuses = [raw(live.url, {"jsonrpc": "2.0", "id": n, "method": "ping"}, {"Mcp-Session-Id": session_id})[0]
                    for n in range(2)]
        assert statuses == [200, 429]
    finally:
        live.stop()


def test_the_packaged_conversation_bundle_is_the_shipped_one() -> None:
    from importlib import resources

    packaged = (resources.files("cxdb") / "registry" / "conversation-v1.json").read_bytes()
    assert packaged == (REPO / "registry_bundles" / "conversation-v1.json").read_bytes()


def test_a_session_is_served_by_every_worker(module_store_url: str) -> None:
    """Under --workers 2 the kernel spreads connections over both processes: a handshake session
    opened on one is served by the other, and a subscription made through one notifies a stream on
    the other."""
    live = LiveServer(module_store_url, "--workers", "2", "--event-heartbeat", "1")
    try:
        session_id, _ = initialize(live.url)
        headers = {"Mcp-Session-Id": session_id}
        for n in range(24):  # each urllib request is a new connection
            status, _, reply = raw(live.url, {"jsonrpc": "2.0", "id": n, "method": "ping"}, headers)
            assert status == 200, reply
        notes: asyncio.Queue[Any] = asyncio.Queue()
        with Client(live.url) as http:
            context_id = str(http.create_context(client_tag="mcp/workers").context_id)

            async def scenario() -> None:
                async with connect(live.url, notes=notes) as session:
                    await session.subscribe_resource(f"cxdb://contexts/{context_id}")
                    for n in range(3):
                        await asyncio.to_thread(http.append_turn, context_id, type_id="t", type_version=1,
                                                data={"n": n})
                        note = await asyncio.wait_for(notes.get(), 15)
                        assert note.params.uri == f"cxdb://contexts/{context_id}"
                        while not notes.empty():
                            notes.get_nowait()

            asyncio.run(scenario())
        assert raw(live.url, None, headers, method="DELETE")[0] == 204
        # Every process re-reads a session's record (at most once a second): soon both refuse it.
        wait_until(lambda: all(raw(live.url, {"jsonrpc": "2.0", "id": n, "method": "ping"}, headers)[0] == 404
                               for n in range(6)))
    finally:
        live.stop()
