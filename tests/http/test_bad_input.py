"""Bad input gets the right status and envelope, and leaves the store serving and clean."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cxdb.http.keys import SERVICE
from tests.http.test_contract import MESSAGE, expect_error

Client = TestClient[Any, Any]


async def setup(client: Client) -> None:
    assert (await client.post("/v1/contexts/create", json={"base_turn_id": "0"})).status == 201
    response = await client.post("/v1/contexts/1/append", json={**MESSAGE, "data": {"a": 1}})
    assert response.status == 201


async def assert_still_healthy(client: Client) -> None:
    assert (await client.get("/health")).status == 200
    response = await client.post("/v1/contexts/1/append", json={**MESSAGE, "data": {"after": True}})
    assert response.status == 201
    report = await client.app[SERVICE].check()
    assert report["ok"], report


@pytest.mark.parametrize("path", ["/v1/contexts/create", "/v1/contexts/fork", "/v1/contexts/1/append"])
@pytest.mark.parametrize("raw", [b"{bad", b'{"a": }', b"\xff\xfe", b"[1,", b'{"a": NaN}'])
async def test_malformed_json_is_400(client: Client, path: str, raw: bytes) -> None:
    await setup(client)
    await expect_error(await client.post(path, data=raw), 400, "BAD_REQUEST")
    await assert_still_healthy(client)


@pytest.mark.parametrize("path", ["/v1/contexts/create", "/v1/contexts/1/append"])
@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"12", b"null"])
async def test_non_object_body_is_422(client: Client, path: str, raw: bytes) -> None:
    await setup(client)
    await expect_error(await client.post(path, data=raw), 422, "UNPROCESSABLE_ENTITY")


@pytest.mark.parametrize("body, field", [
    ({"base_turn_id": True}, "base_turn_id"),
    ({"base_turn_id": -1}, "base_turn_id"),
    ({"base_turn_id": "abc"}, "base_turn_id"),
    ({"base_turn_id": "18446744073709551616"}, "base_turn_id"),
    ({"base_turn_id": 1.5}, "base_turn_id"),
    ({"base_turn_id": []}, "base_turn_id"),
    ({"client_tag": 5}, "client_tag"),
    ({"client_tag": "t" * 401}, "client_tag"),
    ({"provenance": [1]}, "provenance"),
    ({"provenance": "x"}, "provenance"),
])
async def test_create_field_types(client: Client, body: dict[str, Any], field: str) -> None:
    error = await expect_error(await client.post("/v1/contexts/create", json=body), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"] == field
    assert (await client.get("/v1/stats")).status == 200
    assert (await (await client.get("/v1/stats")).json())["contexts"] == 0


async def test_empty_create_body_means_defaults(client: Client) -> None:
    response = await client.post("/v1/contexts/create", data=b"")
    assert response.status == 201 and (await response.json())["head_turn_id"] == "0"
    await expect_error(await client.post("/v1/contexts/1/append", data=b""), 422, "UNPROCESSABLE_ENTITY")


async def test_fork_needs_an_existing_base(client: Client) -> None:
    await setup(client)
    await expect_error(await client.post("/v1/contexts/fork", json={}), 422, "UNPROCESSABLE_ENTITY")
    await expect_error(await client.post("/v1/contexts/fork", json={"base_turn_id": "99"}), 404, "NOT_FOUND")
    await expect_error(await client.post("/v1/contexts/create", json={"base_turn_id": "99"}), 404, "NOT_FOUND")


@pytest.mark.parametrize("change, field", [
    ({"type_id": None}, "type_id"),
    ({"type_id": 7}, "type_id"),
    ({"type_id": ""}, "type_id"),
    ({"type_version": None}, "type_version"),
    ({"type_version": "x"}, "type_version"),
    ({"type_version": -1}, "type_version"),
    ({"type_version": True}, "type_version"),
    ({"type_version": 2**40}, "type_version"),
    ({"data": None}, "payload"),
    ({"data": [1, 2]}, "data"),
    ({"data": "text"}, "data"),
    ({"parent_turn_id": "x"}, "parent_turn_id"),
    ({"parent_turn_id": -3}, "parent_turn_id"),
    ({"idempotency_key": 5}, "idempotency_key"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "k" * 1000}, "idempotency_key"),
])
async def test_append_field_types(client: Client, change: dict[str, Any], field: str) -> None:
    await setup(client)
    body = {**MESSAGE, "data": {"a": 1}, **change}
    body = {key: value for key, value in body.items() if value is not None}
    error = await expect_error(await client.post("/v1/contexts/1/append", json=body), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"] == field
    await assert_still_healthy(client)


async def test_append_to_missing_context_and_parent(client: Client) -> None:
    await setup(client)
    await expect_error(await client.post("/v1/contexts/42/append", json={**MESSAGE, "data": {}}), 404, "NOT_FOUND")
    error = await expect_error(await client.post("/v1/contexts/1/append", json={
        **MESSAGE, "data": {}, "parent_turn_id": "12345"}), 409, "CONFLICT")
    assert error["details"]["parent_turn_id"] == "12345"
    await assert_still_healthy(client)


@pytest.mark.parametrize("query", [
    "limit=abc", "limit=-1", "limit=1.5", "limit=", "limit=999999999999999999999999",
    "before_turn_id=abc", "before_turn_id=-1", "before_turn_id=18446744073709551616",
    "view=pretty", "type_hint_mode=guess", "bytes_render=base32", "u64_format=float", "enum_render=name",
    "time_render=rfc2822", "include_unknown=maybe", "as_type_version=x",
])
async def test_bad_query_parameters_are_400(client: Client, query: str) -> None:
    await setup(client)
    error = await expect_error(await client.get(f"/v1/contexts/1/turns?{query}"), 400, "BAD_REQUEST")
    assert error["details"]["parameter"] == query.split("=")[0]


@pytest.mark.parametrize("path", ["/v1/contexts?limit=x", "/v1/contexts?include_lineage=2",
                                  "/v1/contexts/1/children?recursive=sometimes", "/v1/contexts/1?include_lineage=t"])
async def test_bad_listing_parameters_are_400(client: Client, path: str) -> None:
    await setup(client)
    await expect_error(await client.get(path), 400, "BAD_REQUEST")


@pytest.mark.parametrize("context_id", ["18446744073709551616", "-1", "abc", "1e3", "%20"])
async def test_bad_path_ids_are_400(client: Client, context_id: str) -> None:
    await expect_error(await client.get(f"/v1/contexts/{context_id}"), 400, "BAD_REQUEST")
    await expect_error(await client.get(f"/v1/contexts/{context_id}/turns"), 400, "BAD_REQUEST")
    await expect_error(await client.post(f"/v1/contexts/{context_id}/append", json={**MESSAGE, "data": {}}), 400,
                       "BAD_REQUEST")


async def test_largest_id_is_just_missing(client: Client) -> None:
    await expect_error(await client.get("/v1/contexts/18446744073709551615"), 404, "NOT_FOUND")
    await expect_error(await client.get("/v1/contexts/0/turns"), 404, "NOT_FOUND")


async def test_body_over_limit_is_413(make_client: Any) -> None:
    client = await make_client(max_body_bytes=2048)
    await setup(client)
    big = {**MESSAGE, "data": {"text": "x" * 5000}}
    await expect_error(await client.post("/v1/contexts/1/append", json=big), 413, "PAYLOAD_TOO_LARGE")
    await assert_still_healthy(client)


@pytest.mark.parametrize("depth", [65, 200, 5000])
async def test_deep_json_is_422(client: Client, depth: int) -> None:
    await setup(client)
    nested = "[" * depth + "]" * depth
    raw = ('{"type_id": "t", "type_version": 1, "data": {"x": ' + nested + "}}").encode()
    error = await expect_error(await client.post("/v1/contexts/1/append", data=raw), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["max_depth"] == 64
    await assert_still_healthy(client)


async def test_moderately_deep_json_is_accepted(client: Client) -> None:
    await setup(client)
    value: Any = 1
    for _ in range(60):
        value = {"k": value}
    response = await client.post("/v1/contexts/1/append", json={**MESSAGE, "data": value})
    assert response.status == 201


@pytest.mark.parametrize("literal", ["-18446744073709551615", "18446744073709551616", "1" + "0" * 40])
async def test_integers_past_64_bits_are_422_not_rounded(client: Client, literal: str) -> None:
    await setup(client)
    raw = b'{"type_id": "t", "type_version": 1, "data": {"n": [1, {"m": %s}]}}' % literal.encode()
    await expect_error(await client.post("/v1/contexts/1/append", data=raw), 422, "UNPROCESSABLE_ENTITY")
    await assert_still_healthy(client)


@pytest.mark.parametrize("literal, value", [("18446744073709551615", 2**64 - 1),
                                            ("-9223372036854775808", -(2**63)), ("1e30", 1e30)])
async def test_edge_numbers_are_kept_exactly(client: Client, literal: str, value: Any) -> None:
    await setup(client)
    raw = b'{"type_id": "t", "type_version": 1, "data": {"n": %s}}' % literal.encode()
    assert (await client.post("/v1/contexts/1/append", data=raw)).status == 201
    page = await (await client.get("/v1/contexts/1/turns?limit=1&u64_format=number")).json()
    assert page["turns"][0]["data"]["n"] == value


async def test_concurrent_retries_make_one_turn(client: Client) -> None:
    await setup(client)
    body = {**MESSAGE, "data": {"retry": 1}, "idempotency_key": "retry-1"}
    responses = await asyncio.gather(*(client.post("/v1/contexts/1/append", json=body) for _ in range(16)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 15 + [201]
    assert len({(await r.json())["turn_id"] for r in responses}) == 1
    await assert_still_healthy(client)


async def test_concurrent_appends_form_one_chain(client: Client) -> None:
    await setup(client)
    responses = await asyncio.gather(*(client.post("/v1/contexts/1/append", json={**MESSAGE, "data": {"i": i}})
                                       for i in range(48)))
    assert all(r.status == 201 for r in responses)
    page = await (await client.get("/v1/contexts/1/turns?limit=100")).json()
    turns = page["turns"]
    assert len(turns) == 49 and [t["depth"] for t in turns] == list(range(1, 50))
    assert all(b["parent_turn_id"] == a["turn_id"] for a, b in zip(turns, turns[1:], strict=False))


async def test_huge_digit_strings_never_reach_int(client: Client) -> None:
    await setup(client)
    digits = "9" * 5000
    await expect_error(await client.get(f"/v1/contexts/1/turns?as_type_version={digits}"), 400, "BAD_REQUEST")
    await expect_error(await client.post("/v1/contexts/1/append", json={
        "type_id": "t", "type_version": digits, "data": {}}), 422, "UNPROCESSABLE_ENTITY")
    bundle = {"registry_version": 1, "bundle_id": "b", "types": {"T": {"versions": {digits: {"fields": {}}}}}}
    await expect_error(await client.put("/v1/registry/bundles/b", json=bundle), 422, "UNPROCESSABLE_ENTITY")
    response = await client.post("/v1/contexts/1/append", json={"type_id": "t", "type_version": 1,
                                                                "data": {digits: 1, "1": 2}})
    assert response.status == 201
    page = await (await client.get("/v1/contexts/1/turns?limit=1&include_unknown=1")).json()
    assert page["turns"][0]["data"] == {digits: 1, "1": 2}
    await assert_still_healthy(client)
