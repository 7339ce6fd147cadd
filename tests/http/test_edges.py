"""Edges where the backends could differ, answered the same on both: ids past PostgreSQL's bigint,
strings holding U+0000, and the largest u64."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
BIG = [str(2**63 - 1), str(2**63), str(2**64 - 1)]


async def test_ids_past_a_signed_64_bit_integer_name_nothing(client: Client) -> None:
    created = await (await client.post("/v1/contexts/create", json={})).json()
    context_id = created["context_id"]
    await client.post(f"/v1/contexts/{context_id}/append", json={"type_id": "t", "type_version": 1, "data": {}})
    for big in BIG:
        for path in (f"/v1/contexts/{big}", f"/v1/contexts/{big}/turns", f"/v1/contexts/{big}/children",
                     f"/v1/contexts/{context_id}/turns?before_turn_id={big}"):
            response = await client.get(path)
            assert response.status == 404, (path, await response.text())
        fork = await client.post("/v1/contexts/fork", json={"base_turn_id": big})
        assert fork.status == 404, await fork.text()
        append = await client.post(f"/v1/contexts/{big}/append", json={"type_id": "t", "type_version": 1, "data": {}})
        assert append.status == 404
        parent = await client.post(f"/v1/contexts/{context_id}/append",
                                   json={"type_id": "t", "type_version": 1, "data": {}, "parent_turn_id": big})
        assert parent.status == 409 and (await parent.json())["error"]["details"]["parent_turn_id"] == big


async def test_strings_with_nul_round_trip(client: Client) -> None:
    tag, key, type_id = "tag\u0000x", "key\u0000y", "type\u0000z"
    for other in ("tag", "tag\u0000", None):  # neighbours the tag must not be confused with
        assert (await client.post("/v1/contexts/create", json={"client_tag": other})).status == 201
    created = await client.post("/v1/contexts/create", json={"client_tag": tag, "provenance": {"a\u0000": "b\u0000"}})
    assert created.status == 201, await created.text()
    context = await created.json()
    context_id = context["context_id"]
    body = {"type_id": type_id, "type_version": 1, "data": {"s": "\u0000"}, "idempotency_key": key}
    first = await (await client.post(f"/v1/contexts/{context_id}/append", json=body)).json()
    again = await client.post(f"/v1/contexts/{context_id}/append", json=body)
    assert again.status == 200 and (await again.json())["turn_id"] == first["turn_id"]
    listed = await (await client.get("/v1/contexts", params={"tag": tag})).json()
    assert [c["context_id"] for c in listed["contexts"]] == [context_id]
    detail = await (await client.get(f"/v1/contexts/{context_id}")).json()
    assert detail["client_tag"] == tag and detail["provenance"] == {"a\u0000": "b\u0000"}
    turns = await (await client.get(f"/v1/contexts/{context_id}/turns", params={"view": "raw"})).json()
    assert turns["turns"][0]["declared_type"]["type_id"] == type_id
