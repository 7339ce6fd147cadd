"""Issue 11's status findings: each answer has the right status, the envelope, and nothing is changed."""

from __future__ import annotations

import gzip
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.http.test_contract import MESSAGE, append, create, expect_error

Client = TestClient[Any, Any]


async def test_a_body_that_is_not_compressed_as_declared_is_400_and_logs_no_error(
        client: Client, caplog: Any) -> None:
    await create(client)
    caplog.set_level(logging.DEBUG)
    body = b'{"type_id": "a", "type_version": 1, "data": {}}'
    for encoding in ("gzip", "deflate"):
        # aiohttp closes a connection whose body it could not read: one connection per request.
        response = await client.post("/v1/contexts/1/append", data=body,
                                     headers={"Content-Encoding": encoding, "Connection": "close"})
        error = await expect_error(response, 400, "BAD_REQUEST")
        assert "could not be read" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # A body that really is compressed is read.
    response = await client.post("/v1/contexts/1/append", data=gzip.compress(body),
                                 headers={"Content-Encoding": "gzip"})
    assert response.status == 201


@pytest.mark.parametrize("number", ["9" * 20, "9" * 5000, "1e400", "-1e400", "-" + "9" * 400])
async def test_every_number_past_64_bits_is_422(client: Client, number: str) -> None:
    await create(client)
    raw = b'{"type_id": "a", "type_version": 1, "data": {"x": ' + number.encode() + b"}}"
    error = await expect_error(await client.post("/v1/contexts/1/append", data=raw), 422, "UNPROCESSABLE_ENTITY")
    assert "64-bit" in error["message"]


async def test_options_answers_404_for_unknown_paths_and_the_path_s_own_methods(client: Client) -> None:
    await expect_error(await client.options("/no/such/path"), 404, "NOT_FOUND")
    response = await client.options("/v1/contexts/create")
    assert response.status == 204
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    response = await client.options("/v1/contexts/1/turns")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    response = await client.options("/v1/registry/bundles/b1", headers={
        "Origin": "http://ui.example", "Access-Control-Request-Method": "PUT"})
    assert response.status == 204
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "PUT", "OPTIONS"}


@pytest.mark.parametrize("path", ["/v1/contexts/create", "/v1/contexts/fork"])
async def test_get_on_a_post_only_route_is_405(client: Client, path: str) -> None:
    response = await client.get(path)
    error = await expect_error(response, 405, "METHOD_NOT_ALLOWED")
    assert error["details"]["allowed_methods"] == ["POST"]
    assert response.headers["Allow"] == "POST"
    await expect_error(await client.get("/v1/contexts/creates"), 400, "BAD_REQUEST")  # still an id


async def test_require_registry_answers_404_for_a_missing_context_first(make_client: Any) -> None:
    client = await make_client(require_registry=True)
    body = {**MESSAGE, "data": {"text": "hi"}}
    await expect_error(await client.post("/v1/contexts/9/append", json=body), 404, "NOT_FOUND")
    await create(client)
    await expect_error(await client.post("/v1/contexts/1/append", json=body), 412, "PRECONDITION_FAILED")


async def test_limit_zero_returns_the_cursor_the_next_page_uses(client: Client) -> None:
    await create(client)
    ids = [(await append(client, "1", {"n": n}))["turn_id"] for n in range(3)]
    page = await (await client.get(f"/v1/contexts/1/turns?limit=0&before_turn_id={ids[2]}")).json()
    assert page["turns"] == [] and page["next_before_turn_id"] == ids[2]
    following = await (await client.get(f"/v1/contexts/1/turns?limit=5&before_turn_id={ids[2]}")).json()
    assert [t["turn_id"] for t in following["turns"]] == ids[:2]
    # The oldest turn has nothing before it: no cursor.
    page = await (await client.get(f"/v1/contexts/1/turns?limit=0&before_turn_id={ids[0]}")).json()
    assert page["next_before_turn_id"] is None


@pytest.mark.parametrize("body", [{}, {"base_turn_id": "0"}, {"base_turn_id": 0}, {"base_turn_id": None}])
async def test_a_fork_needs_an_existing_base_turn(client: Client, body: dict[str, Any]) -> None:
    error = await expect_error(await client.post("/v1/contexts/fork", json=body), 422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["field"] == "base_turn_id"
    assert (await (await client.get("/v1/stats")).json())["contexts"] == 0
    await expect_error(await client.post("/v1/contexts/fork", json={"base_turn_id": "7"}), 404, "NOT_FOUND")
