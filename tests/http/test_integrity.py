"""Data is stored as sent or refused, and rendered as stored: never silently changed (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.http.test_contract import append, create, expect_error

Client = TestClient[Any, Any]


def bundle(fields: dict[str, Any], bundle_id: str = "b1", **extra: Any) -> dict[str, Any]:
    return {"registry_version": 1, "bundle_id": bundle_id,
            "types": {"T": {"versions": {"1": {"fields": fields}}}}, **extra}


async def publish(client: Client, body: dict[str, Any]) -> Any:
    return await client.put(f"/v1/registry/bundles/{body['bundle_id']}", json=body)


async def test_map_keys_that_collide_after_normalisation_are_422(client: Client) -> None:
    assert (await publish(client, bundle({"1": {"name": "m", "type": "map", "key_type": "u32"}}))).status == 201
    await create(client)
    body = {"type_id": "T", "type_version": 1, "data": {"m": {"01": "first", "1": "second"}}}
    error = await expect_error(await client.post("/v1/contexts/1/append", json=body), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"].startswith("m.")
    assert (await (await client.get("/v1/stats")).json())["turns"] == 0
    body["data"] = {"m": {"1": "first", "2": "second"}}
    assert (await client.post("/v1/contexts/1/append", json=body)).status == 201


@pytest.mark.parametrize("value", [3.5e38, -1e39, 1e300])
async def test_an_f32_out_of_range_is_422(client: Client, value: float) -> None:
    assert (await publish(client, bundle({"1": {"name": "x", "type": "f32"}}))).status == 201
    await create(client)
    body = {"type_id": "T", "type_version": 1, "data": {"x": value}}
    error = await expect_error(await client.post("/v1/contexts/1/append", json=body), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"] == "x"
    body["data"] = {"x": 3.4e38}
    assert (await client.post("/v1/contexts/1/append", json=body)).status == 201


async def test_a_payload_that_does_not_fit_a_later_descriptor_renders_generically_with_an_error(
        client: Client) -> None:
    await create(client)
    # Stored generically (no descriptor yet), with keys that look like tags.
    await append(client, "1", {"1": "text", "2": "not a number", "3": [1, 2]}, type_id="T")
    await append(client, "1", {"1": "fits", "2": 7}, type_id="T")
    fields = {"1": {"name": "text", "type": "string"}, "2": {"name": "count", "type": "u32"}}
    assert (await publish(client, bundle(fields))).status == 201
    page = await (await client.get("/v1/contexts/1/turns")).json()
    misfit, fit = page["turns"]
    assert misfit["decoded_as"] is None
    assert misfit["data"] == {"1": "text", "2": "not a number", "3": [1, 2]}
    assert misfit["error"]["code"] == "DESCRIPTOR_MISMATCH" and misfit["error"]["path"] == "count"
    assert fit["decoded_as"] == {"type_id": "T", "type_version": 1}
    assert fit["data"] == {"text": "fits", "count": 7} and "error" not in fit


@pytest.mark.parametrize("change, key", [
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"]["1"].update(optinal=True), "optinal"),
    (lambda b: b["types"]["T"]["versions"].update({"01": b["types"]["T"]["versions"].pop("1")}), "01"),
    (lambda b: b.update(registry_version=1.0), None),
    (lambda b: b.update(registry_version=True), None),
    (lambda b: b.update(enums={"E": {"1": "2"}}), "1"),
    (lambda b: b.update(enums={"E": {"01": "one"}}), "01"),
    (lambda b: b["types"]["T"]["versions"]["1"]["fields"].update({"007": {"name": "b", "type": "bool"}}), "007"),
])
async def test_registry_validation_refuses_what_it_used_to_ignore(client: Client, change: Any,
                                                                  key: str | None) -> None:
    body = bundle({"1": {"name": "a", "type": "string"}})
    change(body)
    error = await expect_error(await publish(client, body), 422, "UNPROCESSABLE_ENTITY")
    if key is not None:
        assert error["details"].get("key") == key, error
    assert (await (await client.get("/v1/registry/bundles")).json())["bundles"] == []


@pytest.mark.parametrize("bundle_id", ["line\nbreak", "tab\there", "#hash/and/slashes", "\u00e9\u0085"])
async def test_any_bundle_id_is_routed(client: Client, bundle_id: str) -> None:
    from urllib.parse import quote

    body = bundle({"1": {"name": "a", "type": "string"}}, bundle_id=bundle_id)
    response = await client.put(f"/v1/registry/bundles/{quote(bundle_id, safe='')}", json=body)
    assert response.status == 201, await response.text()
    response = await client.get(f"/v1/registry/bundles/{quote(bundle_id, safe='')}")
    assert response.status == 200 and (await response.json())["bundle_id"] == bundle_id
