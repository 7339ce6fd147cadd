"""Every route of the contract, in process, with the error envelope checked on every error."""

from __future__ import annotations

import base64
import json
from typing import Any

import blake3
import msgpack
from aiohttp.test_utils import TestClient

from tests.conftest import BUNDLES

Client = TestClient[Any, Any]
MESSAGE = {"type_id": "com.example.Message", "type_version": 1}


async def expect_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]  # type: ignore[no-any-return]


async def create(client: Client, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/contexts/create", json=body or {"base_turn_id": "0"})
    assert response.status == 201, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def append(client: Client, context_id: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/contexts/{context_id}/append", json={**MESSAGE, "data": data, **extra})
    assert response.status in (200, 201), await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_create_and_alias(client: Client) -> None:
    response = await client.post("/v1/contexts/create", json={"base_turn_id": "0"})
    assert response.status == 201
    body = await response.json()
    assert body["context_id"] == "1" and body["head_turn_id"] == "0" and body["head_depth"] == 0
    assert response.headers["Location"] == "/v1/contexts/1"
    response = await client.post("/v1/contexts", json={"base_turn_id": 0, "client_tag": "t",
                                                       "provenance": {"agent": "x"}})
    assert response.status == 201
    body = await response.json()
    assert body["context_id"] == "2" and body["client_tag"] == "t" and body["provenance"] == {"agent": "x"}
    response = await client.post("/v1/contexts")
    assert response.status == 201


async def test_append_page_fork_flow(client: Client) -> None:
    context = await create(client)
    first = await append(client, context["context_id"], {"role": "user", "text": "What is 2+2?"})
    assert first == {"context_id": "1", "turn_id": "1", "parent_turn_id": "0", "depth": 1,
                     "content_hash": first["content_hash"]}
    second = await append(client, "1", {"role": "assistant", "text": "2+2 equals 4."})
    assert second["depth"] == 2
    response = await client.get("/v1/contexts/1/turns")
    page = await response.json()
    assert page["meta"] == {"context_id": "1", "head_turn_id": "2", "head_depth": 2, "registry_bundle_id": None}
    assert [t["turn_id"] for t in page["turns"]] == ["1", "2"]
    assert page["turns"][0] == {"turn_id": "1", "parent_turn_id": "0", "depth": 1,
                                "declared_type": MESSAGE, "decoded_as": None,
                                "data": {"role": "user", "text": "What is 2+2?"}}
    assert page["next_before_turn_id"] is None
    response = await client.post("/v1/contexts/fork", json={"base_turn_id": "1"})
    assert response.status == 201
    fork = await response.json()
    assert fork["context_id"] == "2" and fork["head_turn_id"] == "1" and fork["head_depth"] == 1
    alt = await append(client, "2", {"role": "assistant", "text": "The weather is sunny and 72°F."})
    assert alt["depth"] == 2 and alt["parent_turn_id"] == "1"
    response = await client.post("/v1/contexts/2/turns", json={**MESSAGE, "payload": {"role": "user"}})
    assert response.status == 201 and (await response.json())["depth"] == 3


async def test_paging_limits_and_cursor(client: Client) -> None:
    await create(client)
    for i in range(12):
        await append(client, "1", {"i": i})
    page = await (await client.get("/v1/contexts/1/turns?limit=5")).json()
    assert [t["turn_id"] for t in page["turns"]] == ["8", "9", "10", "11", "12"]
    assert page["next_before_turn_id"] == "8"
    page = await (await client.get("/v1/contexts/1/turns?limit=5&before_turn_id=8")).json()
    assert [t["turn_id"] for t in page["turns"]] == ["3", "4", "5", "6", "7"]
    page = await (await client.get(f"/v1/contexts/1/turns?limit=5&before_turn_id={page['next_before_turn_id']}"))\
        .json()
    assert [t["turn_id"] for t in page["turns"]] == ["1", "2"] and page["next_before_turn_id"] is None
    page = await (await client.get("/v1/contexts/1/turns?limit=0")).json()
    assert page["turns"] == [] and page["meta"]["head_turn_id"] == "12"
    page = await (await client.get("/v1/contexts/1/turns?limit=5000")).json()
    assert len(page["turns"]) == 12
    await create(client)
    await append(client, "2", {"other": True})
    await expect_error(await client.get("/v1/contexts/1/turns?before_turn_id=13"), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/contexts/1/turns?before_turn_id=999"), 404, "NOT_FOUND")


async def test_a_missing_context_is_reported_before_a_bad_type_hint(client: Client) -> None:
    for query in ("type_hint_mode=explicit", "type_hint_mode=explicit&as_type_id=nope&as_type_version=1"):
        await expect_error(await client.get(f"/v1/contexts/99/turns?{query}"), 404, "NOT_FOUND")
    await create(client)
    await expect_error(await client.get("/v1/contexts/1/turns?type_hint_mode=explicit"), 422, "UNPROCESSABLE_ENTITY")
    unregistered = "/v1/contexts/1/turns?type_hint_mode=explicit&as_type_id=nope&as_type_version=1"
    await expect_error(await client.get(unregistered), 424, "FAILED_DEPENDENCY")


async def test_a_repeated_query_string_means_the_same_on_every_context(client: Client) -> None:
    """Parsed query strings are remembered: the same text must still page each context on its own,
    and a bad one must fail every time, not only the first."""
    for context_id in ("1", "2"):
        await create(client)
        for i in range(3):
            await append(client, context_id, {"context": context_id, "i": i})
    for _ in range(2):
        for context_id in ("1", "2"):
            page = await (await client.get(f"/v1/contexts/{context_id}/turns?limit=2&u64_format=number")).json()
            assert [t["data"]["context"] for t in page["turns"]] == [context_id, context_id]
            assert [t["data"]["i"] for t in page["turns"]] == [1, 2]
        error = await expect_error(await client.get("/v1/contexts/1/turns?limit=2&view=pretty"), 400, "BAD_REQUEST")
        assert error["details"]["parameter"] == "view"


async def test_views_raw_and_both(client: Client) -> None:
    await create(client)
    appended = await append(client, "1", {"role": "user", "text": "hi"})
    raw = (await (await client.get("/v1/contexts/1/turns?view=raw")).json())["turns"][0]
    assert "data" not in raw and "decoded_as" not in raw
    blob = base64.b64decode(raw["bytes_b64"])
    assert msgpack.unpackb(blob) == {"role": "user", "text": "hi"}
    assert raw["content_hash_b3"] == appended["content_hash"] == blake3.blake3(blob).hexdigest()
    assert (raw["encoding"], raw["compression"], raw["uncompressed_len"]) == (1, 0, len(blob))
    both = (await (await client.get("/v1/contexts/1/turns?view=both")).json())["turns"][0]
    assert both["data"] == {"role": "user", "text": "hi"} and both["bytes_b64"] == raw["bytes_b64"]
    response = await client.get(f"/v1/blobs/{appended['content_hash']}")
    assert response.status == 200 and response.content_type == "application/octet-stream"
    assert await response.read() == blob
    response = await client.get(f"/v1/blobs/{appended['content_hash'].upper()}")
    assert response.status == 200
    await expect_error(await client.get("/v1/blobs/" + "0" * 64), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/blobs/xyz"), 400, "BAD_REQUEST")
    await expect_error(await client.get("/v1/blobs/" + "g" * 64), 400, "BAD_REQUEST")


async def test_contexts_listing_detail_and_children(client: Client) -> None:
    await create(client, client_tag="alpha", provenance={"host": "h1"})
    await create(client, client_tag="beta")
    await append(client, "1", {"n": 1})
    fork = await (await client.post("/v1/contexts/fork", json={"base_turn_id": "1", "client_tag": "alpha"})).json()
    on_fork = await append(client, fork["context_id"], {"n": 2})
    grand = await (await client.post("/v1/contexts/fork", json={"base_turn_id": on_fork["turn_id"]})).json()
    listing = await (await client.get("/v1/contexts")).json()
    assert listing["total"] == 4
    assert [c["context_id"] for c in listing["contexts"]][:2] == [grand["context_id"], fork["context_id"]]
    assert "provenance" not in listing["contexts"][0] and "lineage" not in listing["contexts"][0]
    tagged = await (await client.get("/v1/contexts?tag=alpha&include_provenance=true&include_lineage=yes")).json()
    assert tagged["total"] == 2 and {c["context_id"] for c in tagged["contexts"]} == {"1", fork["context_id"]}
    original = next(c for c in tagged["contexts"] if c["context_id"] == "1")
    assert original["provenance"] == {"host": "h1"}
    assert original["lineage"]["children"] == [fork["context_id"]]
    limited = await (await client.get("/v1/contexts?limit=1")).json()
    assert len(limited["contexts"]) == 1 and limited["total"] == 4
    detail = await (await client.get(f"/v1/contexts/{fork['context_id']}")).json()
    assert detail["lineage"] == {"parent_context_id": "1", "root_context_id": "1", "fork_turn_id": "1",
                                 "children": [grand["context_id"]], "child_count": 1}
    assert "provenance" in detail
    bare = await (await client.get(f"/v1/contexts/{fork['context_id']}?include_lineage=0&include_provenance=no"))\
        .json()
    assert "lineage" not in bare and "provenance" not in bare
    children = await (await client.get("/v1/contexts/1/children")).json()
    assert [c["context_id"] for c in children["children"]] == [fork["context_id"]]
    assert "lineage" in children["children"][0]
    every = await (await client.get("/v1/contexts/1/children?recursive=true")).json()
    assert [c["context_id"] for c in every["children"]] == [fork["context_id"], grand["context_id"]]
    assert every["total"] == 2
    capped = await (await client.get("/v1/contexts/1/children?recursive=1&limit=1")).json()
    assert len(capped["children"]) == 1 and capped["total"] == 2
    await expect_error(await client.get("/v1/contexts/999"), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/contexts/999/children"), 404, "NOT_FOUND")


async def test_registry_routes(client: Client) -> None:
    body = (BUNDLES / "conversation-v1.json").read_bytes()
    response = await client.put("/v1/registry/bundles/conversation-v1", data=body)
    assert response.status == 201
    etag = response.headers["ETag"]
    response = await client.put("/v1/registry/bundles/conversation-v1", data=body)
    assert response.status == 204 and response.headers["ETag"] == etag
    reformatted = json.dumps(json.loads(body), indent=None, sort_keys=True)
    assert (await client.put("/v1/registry/bundles/conversation-v1", data=reformatted)).status == 204
    response = await client.get("/v1/registry/bundles/conversation-v1")
    assert response.status == 200
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await response.json() == json.loads(body)
    response = await client.get("/v1/registry/bundles/conversation-v1", headers={"If-None-Match": etag})
    assert response.status == 304
    response = await client.get("/v1/registry/bundles/conversation-v1", headers={"If-None-Match": '"other"'})
    assert response.status == 200
    await expect_error(await client.get("/v1/registry/bundles/nope"), 404, "NOT_FOUND")
    listing = await (await client.get("/v1/registry/bundles")).json()
    assert [b["bundle_id"] for b in listing["bundles"]] == ["conversation-v1"]
    descriptor = await (await client.get("/v1/registry/types/cxdb.chat.Message/versions/1")).json()
    assert descriptor["type_id"] == "cxdb.chat.Message" and descriptor["type_version"] == 1
    assert descriptor["fields"]["1"] == {"name": "role", "type": "u8", "enum": "cxdb.chat.Role"}
    await expect_error(await client.get("/v1/registry/types/cxdb.chat.Message/versions/7"), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/registry/types/nope/versions/1"), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/registry/types/cxdb.chat.Message/versions/x"), 400, "BAD_REQUEST")
    types = await (await client.get("/v1/registry/types")).json()
    assert {"type_id": "cxdb.chat.Message", "latest_version": 1, "bundle_id": "conversation-v1"} in types["types"]


async def test_bundle_id_is_percent_decoded(client: Client) -> None:
    bundle = {"registry_version": 1, "bundle_id": "2025-01-30T10:00:00Z#abc123", "types": {}}
    response = await client.put("/v1/registry/bundles/2025-01-30T10:00:00Z%23abc123", json=bundle)
    assert response.status == 201
    assert (await client.get("/v1/registry/bundles/2025-01-30T10:00:00Z%23abc123")).status == 200
    error = await expect_error(await client.put("/v1/registry/bundles/other", json=bundle), 422,
                               "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"] == "bundle_id"


async def test_registry_errors_over_http(client: Client) -> None:
    await expect_error(await client.put("/v1/registry/bundles/x", data=b"{nope"), 422, "UNPROCESSABLE_ENTITY")
    await expect_error(await client.put("/v1/registry/bundles/x", json=[1]), 422, "UNPROCESSABLE_ENTITY")
    bundle = json.loads((BUNDLES / "conversation-v1.json").read_text())
    assert (await client.put("/v1/registry/bundles/conversation-v1", json=bundle)).status == 201
    bundle["types"]["cxdb.chat.Message"]["versions"]["1"]["fields"]["2"]["optional"] = False
    await expect_error(await client.put("/v1/registry/bundles/conversation-v1", json=bundle), 409, "CONFLICT")
    bundle["bundle_id"] = "changed"
    await expect_error(await client.put("/v1/registry/bundles/changed", json=bundle), 409, "CONFLICT")
    assert (await client.get("/v1/registry/bundles/changed")).status == 404
    types = await (await client.get("/v1/registry/types")).json()
    assert len(types["types"]) == 2


async def test_typed_append_and_projection_over_http(client: Client) -> None:
    for name in ("conversation-v1", "conversation-v2"):
        response = await client.put(f"/v1/registry/bundles/{name}", data=(BUNDLES / f"{name}.json").read_bytes())
        assert response.status == 201
    await create(client)
    message = {"type_id": "cxdb.chat.Message", "type_version": 2}
    response = await client.post("/v1/contexts/1/append", json={**message, "data": {
        "role": "user", "text": "hi", "timestamp": "1706615000000", "attachments": ["aGk="], "tokens": 3}})
    assert response.status == 201
    page = await (await client.get("/v1/contexts/1/turns?enum_render=both&u64_format=number")).json()
    assert page["meta"]["registry_bundle_id"] == "conversation-v2"
    assert page["turns"][0]["data"] == {"role": {"label": "user", "value": 2}, "text": "hi",
                                        "timestamp": "2024-01-30T11:43:20.000Z", "attachments": ["aGk="],
                                        "tokens": 3}
    for bad, field in [({"role": "nobody"}, "role"), ({"role": "user", "extra": 1}, "extra"),
                       ({"role": "user", "tokens": -1}, "tokens"), ({"role": "user", "attachments": ["!!"]},
                                                                   "attachments[0]"),
                       ({"role": "user", "tool_calls": [{"id": "a", "name": 3}]}, "tool_calls[0].name"),
                       ({"role": "user", "tool_calls": [{"id": "a"}]}, "tool_calls[0].name"),
                       ({"text": "no role"}, "role")]:
        response = await client.post("/v1/contexts/1/append", json={**message, "data": bad})
        error = await expect_error(response, 422, "UNPROCESSABLE_ENTITY")
        assert error["details"]["field"] == field, error
    await expect_error(await client.get("/v1/contexts/1/turns?type_hint_mode=explicit&as_type_id=cxdb.chat.Message"),
                       422, "UNPROCESSABLE_ENTITY")
    await expect_error(await client.get(
        "/v1/contexts/1/turns?type_hint_mode=explicit&as_type_id=cxdb.chat.Message&as_type_version=9"),
        424, "FAILED_DEPENDENCY")
    explicit = await (await client.get(
        "/v1/contexts/1/turns?type_hint_mode=explicit&as_type_id=cxdb.chat.Message&as_type_version=1"
        "&include_unknown=yes")).json()
    assert explicit["turns"][0]["unknown"] == {"6": 3}


async def test_health_and_stats(client: Client) -> None:
    for path in ("/health", "/healthz"):
        body = await (await client.get(path)).json()
        assert body["status"] == "ok" and body["version"] == "1.0.0" and isinstance(body["uptime_seconds"], int)
    await create(client)
    await append(client, "1", {"same": True})
    await append(client, "1", {"same": True})
    stats = await (await client.get("/v1/stats")).json()
    assert {k: stats[k] for k in ("contexts", "turns", "blobs")} == {"contexts": 1, "turns": 2, "blobs": 1}
    assert stats["dedup_hit_rate"] == 0.5 and stats["storage_bytes"] > 0


async def test_idempotent_append_over_http(client: Client) -> None:
    await create(client)
    body = {**MESSAGE, "data": {"x": 1}, "idempotency_key": "client-123-1706615000-001"}
    first = await client.post("/v1/contexts/1/append", json=body)
    again = await client.post("/v1/contexts/1/append", json=body)
    assert first.status == 201 and again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await first.json() == await again.json()
    await expect_error(await client.post("/v1/contexts/1/append", json={**body, "data": {"x": 2}}), 409,
                       "CONFLICT")
    assert (await (await client.get("/v1/stats")).json())["turns"] == 1


async def test_unknown_routes_and_methods(client: Client) -> None:
    await expect_error(await client.get("/v2/nothing"), 404, "NOT_FOUND")
    error = await expect_error(await client.delete("/v1/contexts/1/turns"), 405, "METHOD_NOT_ALLOWED")
    assert "GET" in error["details"]["allowed_methods"]
    error = await expect_error(await client.put("/v1/contexts/1"), 405, "METHOD_NOT_ALLOWED")
    assert {"GET", "DELETE"} <= set(error["details"]["allowed_methods"])
    await expect_error(await client.put("/v1/contexts/create"), 405, "METHOD_NOT_ALLOWED")


async def test_cors(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": "https://ui.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert "X-Request-Id" in exposed and response.headers["X-Request-Id"]  # a browser client can read it
    response = await client.options("/v1/contexts/1/append", headers={
        "Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "content-type"
    response = await client.get("/nope", headers={"Origin": "https://ui.example"})
    assert response.status == 404 and response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cors_allowlist(make_client: Any) -> None:
    client = await make_client(cors_origins=("https://good.example",))
    good = await client.get("/health", headers={"Origin": "https://good.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert "Origin" in good.headers.getall("Vary")
    bad = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


async def test_require_registry(make_client: Any) -> None:
    client = await make_client(require_registry=True)
    await create(client)
    await expect_error(await client.post("/v1/contexts/1/append", json={**MESSAGE, "data": {"a": 1}}), 412,
                       "PRECONDITION_FAILED")
    await client.put("/v1/registry/bundles/conversation-v1", data=(BUNDLES / "conversation-v1.json").read_bytes())
    response = await client.post("/v1/contexts/1/append", json={"type_id": "cxdb.chat.Message", "type_version": 1,
                                                                "data": {"role": "user"}})
    assert response.status == 201


async def test_cached_pages_follow_the_registry(client: Client) -> None:
    await create(client)
    response = await client.post("/v1/contexts/1/append", json={"type_id": "x.Tagged", "type_version": 1,
                                                                "data": {"1": "user"}})
    assert response.status == 201
    for _ in range(2):
        page = await (await client.get("/v1/contexts/1/turns")).json()
        assert page["turns"][0]["decoded_as"] is None and page["turns"][0]["data"] == {"1": "user"}
    bundle = {"registry_version": 1, "bundle_id": "tagged", "types": {"x.Tagged": {"versions": {"1": {"fields": {
        "1": {"name": "role", "type": "string"}}}}}}}
    assert (await client.put("/v1/registry/bundles/tagged", json=bundle)).status == 201
    page = await (await client.get("/v1/contexts/1/turns")).json()
    assert page["meta"]["registry_bundle_id"] == "tagged"
    assert page["turns"][0]["decoded_as"] == {"type_id": "x.Tagged", "type_version": 1}
    assert page["turns"][0]["data"] == {"role": "user"}
    await append(client, "1", {"after": 1})
    page = await (await client.get("/v1/contexts/1/turns")).json()
    assert [t["depth"] for t in page["turns"]] == [1, 2] and page["meta"]["head_depth"] == 2


async def test_internal_errors_are_generic_and_logged(client: Client, caplog: Any) -> None:
    from cxdb.http.keys import SERVICE

    service = client.app[SERVICE]

    def broken() -> dict[str, Any]:
        raise ValueError("secret internals: /srv/cxdb/data.mdb")

    service.stats = broken  # type: ignore[method-assign]
    from cxdb.logs import _RequestIdFilter

    caplog.handler.addFilter(_RequestIdFilter())
    response = await client.get("/v1/stats", headers={"X-Request-Id": "trace-42"})
    error = await expect_error(response, 500, "INTERNAL_ERROR")
    assert error == {"code": "INTERNAL_ERROR", "message": "Internal server error",
                     "details": {"request_id": "trace-42"}}
    assert response.headers["X-Request-Id"] == "trace-42"
    assert "secret" not in await response.text()
    logged = [record for record in caplog.records if record.exc_info]
    assert logged and all(getattr(record, "request_id", None) == "trace-42" for record in logged)
    assert (await client.get("/health")).status == 200
