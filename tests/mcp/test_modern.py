"""/mcp at protocol revision 2026-07-28 (no handshake, no session; subscriptions/listen), with the
official SDK's ``Client`` in its default ``auto`` mode, which discovers the revision, against a live
server on each backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cxdb import Client as Http
from tests.conftest import LiveServer
from tests.mcp.test_mcp import raw

mcp = pytest.importorskip("mcp", reason="the test extra installs the official MCP SDK")
from mcp.client.client import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {"MCP-Protocol-Version": MODERN}


@contextlib.asynccontextmanager
async def modern(url: str, token: str | None = None) -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http, \
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        assert client.session.protocol_version == MODERN  # auto mode found the newest revision
        yield client


async def test_the_newest_revision_discovered_tools_resources_and_listen(module_store_url: str,
                                                                         server: LiveServer) -> None:
    other = LiveServer(module_store_url)  # the append goes through another server of the store
    try:
        with Http(other.url) as http:
            async with modern(server.url) as client:
                tools = (await client.list_tools()).tools
                assert len(tools) == 11 and all(tool.output_schema for tool in tools)
                made = await client.call_tool("create_context", {"client_tag": "modern/a"})
                assert not made.is_error
                context_id = made.structured_content["context_id"]
                appended = await client.call_tool("append_message", {"context_id": context_id, "role": "user",
                                                                     "text": "hello"})
                assert not appended.is_error
                page = await client.call_tool("get_turns", {"context_id": context_id})
                assert page.structured_content["turns"][0]["data"]["text"] == "hello"
                missing = await client.call_tool("get_context", {"context_id": "987654321"})
                assert missing.is_error and missing.structured_content["error"]["code"] == "NOT_FOUND"
                uri = f"cxdb://contexts/{context_id}"
                read = await client.read_resource(uri)
                assert json.loads(read.contents[0].text)["meta"]["head_depth"] == 1
                listed = await client.list_resources()
                assert uri in {str(resource.uri) for resource in listed.resources}
                async with client.listen(resource_subscriptions=[uri, "cxdb://contexts/987654321"]) as events:
                    assert events.honored.resource_subscriptions == [uri]  # a missing context is not honored
                    await asyncio.to_thread(http.append_turn, context_id, type_id="t", type_version=1, data={})

                    async def first() -> Any:
                        async for event in events:
                            return event

                    event = await asyncio.wait_for(first(), 10)
                    assert str(event.uri) == uri
    finally:
        other.stop()


async def test_scopes_and_namespaces_at_the_newest_revision(module_store_url: str) -> None:
    boot = "modern-bootstrap-token-" + "m" * 30
    live = LiveServer(module_store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": boot})
    try:
        with Http(live.url, token=boot) as admin:
            reader = admin.create_token("cxdb:read", namespace="modern-a/").token
            outside = str(admin.create_context(client_tag="modern-b/x").context_id)
            inside = str(admin.create_context(client_tag="modern-a/x").context_id)
        async with modern(live.url, reader) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("create_context", {"client_tag": "modern-a/y"})
            assert refused.value.error.code == -32003
            listed = (await client.call_tool("list_contexts", {})).structured_content
            assert [c["context_id"] for c in listed["contexts"]] == [inside]
            with pytest.raises(MCPError):
                await client.read_resource(f"cxdb://contexts/{outside}")
            async with client.listen(resource_subscriptions=[f"cxdb://contexts/{outside}"]) as events:
                assert not events.honored.resource_subscriptions
    finally:
        live.stop()


def test_a_request_that_disagrees_with_itself_is_refused(server: LiveServer) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": META}}
    status, _, reply = raw(server.url, ping, {**HEADERS, "Mcp-Method": "ping"})
    assert status == 200 and reply["result"]["resultType"] == "complete"
    status, _, reply = raw(server.url, ping, {**HEADERS, "Mcp-Method": "tools/list"})
    assert status == 400 and reply["error"]["code"] == -32020
    status, _, reply = raw(server.url, ping, {"MCP-Protocol-Version": "2025-11-25", "Mcp-Method": "ping"})
    assert status == 400 and reply["error"]["code"] == -32020
    old = {**ping, "params": {"_meta": {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}}}
    status, _, reply = raw(server.url, old, {"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "ping"})
    assert status == 400 and reply["error"]["code"] == -32022
    assert reply["error"]["data"] == {"supported": [MODERN], "requested": "2099-01-01"}
    status, _, reply = raw(server.url, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, {})
    assert status == 400 and reply["error"]["code"] == -32602  # neither an envelope nor a session
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"_meta": META, "name": "list_types", "arguments": {}}}
    status, _, reply = raw(server.url, call, {**HEADERS, "Mcp-Method": "tools/call", "Mcp-Name": "get_type"})
    assert status == 400 and reply["error"]["code"] == -32020
    status, _, reply = raw(server.url, call, {**HEADERS, "Mcp-Method": "tools/call", "Mcp-Name": "list_types"})
    assert status == 200 and not reply["result"]["isError"]
    gone = {"jsonrpc": "2.0", "id": 4, "method": "resources/subscribe",
            "params": {"_meta": META, "uri": "cxdb://contexts/1"}}
    status, _, reply = raw(server.url, gone, {**HEADERS, "Mcp-Method": "resources/subscribe"})
    assert status == 404 and reply["error"]["code"] == -32601
