"""Memory is bounded in bytes whatever the payload sizes, and big bodies do not stall the server (issue 11)."""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient

from cxdb.http.keys import SERVICE
from cxdb.service.core import MAX_CACHED_PAYLOAD, PROJECTION_CACHE_BYTES
from cxdb.storage.dictionaries import DictionaryTrainer
from tests.conftest import LiveServer
from tests.http.test_contract import create, expect_error

Client = TestClient[Any, Any]


def test_dictionary_samples_are_bounded_in_bytes() -> None:
    trainer = DictionaryTrainer(lambda data: None, threshold=100, retrain_every=10**9)
    payload = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(99):
        trainer.observe(payload)
    assert trainer.sample_bytes <= 99 * DictionaryTrainer.SAMPLE_BYTES  # not 99 MiB
    trainer.close()


def big(raw: bytes) -> io.BytesIO:
    return io.BytesIO(raw)  # aiohttp's client warns about large bytes bodies


async def post_text(client: Client, size: int, n: int) -> None:
    body = {"type_id": "t", "type_version": 1, "data": {"n": n, "text": "x" * size}}
    assert (await client.post("/v1/contexts/1/append", data=big(orjson.dumps(body)))).status == 201


async def test_projections_are_cached_by_bytes_and_huge_ones_not_at_all(client: Client) -> None:
    await create(client)
    for n in range(20):
        await post_text(client, 200_000, n)
    for n in range(3):
        await post_text(client, MAX_CACHED_PAYLOAD + 1000, 100 + n)
    service = client.app[SERVICE]
    for options in ("", "&bytes_render=hex", "&u64_format=number", "&enum_render=both", "&time_render=unix_ms",
                    "&include_unknown=true"):
        held = service.cache_bytes()["projections"]
        response = await client.get(f"/v1/contexts/1/turns?limit=3{options}")
        assert response.status == 200
        assert len((await response.json())["turns"]) == 3
        assert service.cache_bytes()["projections"] == held  # the newest three are over MAX_CACHED_PAYLOAD
        response = await client.get(f"/v1/contexts/1/turns?limit=20&before_turn_id=21{options}")
        assert response.status == 200
    held = service.cache_bytes()["projections"]
    assert 0 < held <= PROJECTION_CACHE_BYTES


async def test_a_page_stops_at_its_byte_budget_and_its_cursor_continues(make_client: Any) -> None:
    client = await make_client(max_page_bytes=1_000_000)
    await create(client)
    for n in range(10):
        await post_text(client, 300_000, n)
    await post_text(client, 2_000_000, 10)  # alone over the budget
    seen: list[int] = []
    before = ""
    sizes = []
    while True:
        response = await client.get(f"/v1/contexts/1/turns?limit=100{before}")
        raw = await response.read()
        page = orjson.loads(raw)
        sizes.append((len(page["turns"]), len(raw)))
        seen = [turn["data"]["n"] for turn in page["turns"]] + seen
        if page["next_before_turn_id"] is None:
            break
        assert page["next_before_turn_id"] == page["turns"][0]["turn_id"]
        before = f"&before_turn_id={page['next_before_turn_id']}"
    assert seen == list(range(11))
    assert sizes[0][0] == 1  # the big turn is sent alone, since one turn is always sent
    assert all(count == 3 and size <= 1_000_000 + 300 for count, size in sizes[1:-1]), sizes
    # view=both doubles each turn: fewer per page.
    page = await (await client.get("/v1/contexts/1/turns?limit=100&view=both&before_turn_id=11")).json()
    assert len(page["turns"]) == 1


def dense_body(count: int) -> bytes:
    return b'{"type_id":"a","type_version":1,"data":{"a":[' + b"[]," * count + b"[]]}}"


async def test_a_body_of_millions_of_tiny_values_is_refused_before_parsing(client: Client) -> None:
    await create(client)
    error = await expect_error(await client.post("/v1/contexts/1/append", data=big(dense_body(5_000_000))),
                               422, "UNPROCESSABLE_ENTITY")
    assert error["details"]["max_items"] <= 1_000_000
    # Commas and brackets inside strings are not values.
    text = b'{"type_id":"a","type_version":1,"data":{"a":"' + b"[],{}," * 400_000 + b'"}}'
    assert (await client.post("/v1/contexts/1/append", data=big(text))).status == 201
    # A dense body well within the limits is stored.
    assert (await client.post("/v1/contexts/1/append", data=big(dense_body(10_000)))).status == 201


@pytest.mark.parametrize("shape", ["tiny values", "big strings"])
def test_health_answers_while_big_bodies_arrive(live_server: LiveServer, shape: str) -> None:
    parts = urlsplit(live_server.url)
    host, port = parts.hostname or "", parts.port or 0

    def request(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request(method, path, body=body)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    assert request("POST", "/v1/contexts/create", b"{}")[0] == 201
    if shape == "tiny values":
        body, expected = dense_body(5_400_000), 422  # 16 MiB
    else:
        body, expected = b'{"type_id":"a","type_version":1,"data":{"a":"' + b"x" * 12_000_000 + b'"}}', 201
    answered: list[int] = []
    done = threading.Event()

    def probe() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while not done.is_set():
            conn.request("GET", "/health")
            reply = conn.getresponse()
            reply.read()
            answered.append(reply.status)
            time.sleep(0.01)
        conn.close()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = [status for status, _ in pool.map(lambda _: request("POST", "/v1/contexts/1/append", body),
                                                         range(4))]
    finally:
        done.set()
        prober.join()
    assert statuses == [expected] * 4
    # Every probe was answered while the bodies arrived; how fast is measured in bench/memory.py.
    assert answered and set(answered) == {200}
    assert request("GET", "/health")[0] == 200
