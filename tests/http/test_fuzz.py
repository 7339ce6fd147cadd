"""Hypothesis throws arbitrary JSON at every write route of a live server: never a 500, never a crash."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb.config import Settings
from tests.conftest import BUNDLES, LiveServer

leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
                 allow_infinity=False), st.text(max_size=12), st.sampled_from(["0", "1", "2", "-1", "9" * 30]))
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=20)
ids = st.one_of(leaf, st.integers(0, 5).map(str))
append_body = st.fixed_dictionaries({}, optional={
    "type_id": st.one_of(st.sampled_from(["cxdb.chat.Message", "t"]), leaf),
    "type_version": st.one_of(st.sampled_from([1, 2, "1"]), leaf),
    "data": json_value, "payload": json_value, "parent_turn_id": ids, "idempotency_key": leaf,
})
create_body = st.fixed_dictionaries({}, optional={"base_turn_id": ids, "client_tag": leaf, "provenance": json_value})
bundle_body = st.fixed_dictionaries({"registry_version": st.sampled_from([1, 1, 2]), "bundle_id": st.just("fuzz")},
                                    optional={"types": json_value, "enums": json_value})
OK = {200, 201, 204, 400, 404, 409, 412, 413, 422}


@pytest.fixture(scope="module")
def fuzz_server(module_store_url: str) -> Iterator[LiveServer]:
    server = LiveServer(module_store_url)
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    assert request(conn, "PUT", "/v1/registry/bundles/conversation-v1",
                   (BUNDLES / "conversation-v1.json").read_bytes()) == 201
    conn.close()
    yield server
    server.stop()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: Any) -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, body=raw, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read()
    if response.status >= 400:
        envelope = orjson.loads(text)["error"]
        assert set(envelope) == {"code", "message", "details"}
    return response.status


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(append=append_body, create=create_body, bundle=bundle_body, path_id=ids)
def test_write_routes_never_fail_internally(fuzz_server: LiveServer, append: dict[str, Any],
                                            create: dict[str, Any], bundle: dict[str, Any], path_id: Any) -> None:
    url = urlsplit(fuzz_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        assert request(conn, "POST", "/v1/contexts/create", create) in OK
        assert request(conn, "POST", "/v1/contexts/fork", create) in OK
        assert request(conn, "POST", "/v1/contexts/1/append", append) in OK
        assert request(conn, "POST", f"/v1/contexts/{quote(str(path_id)[:30], safe='')}/append", append) in OK
        assert request(conn, "PUT", "/v1/registry/bundles/fuzz", bundle) in OK
        assert request(conn, "GET", "/v1/contexts/1/turns?view=both&include_unknown=1", b"") in OK
    finally:
        conn.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=st.integers(-(2**70), 2**70) | st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**18]),
       text=st.text(alphabet="0123456789 x", max_size=40), depth=st.integers(0, 3))
def test_integers_are_kept_exactly_or_refused(fuzz_server: LiveServer, number: int, text: str, depth: int) -> None:
    """Any integer literal is stored exactly or refused with 422, never rounded; long digit runs inside
    strings are only text."""
    data: Any = {"n": number, "s": text}
    for _ in range(depth):
        data = {"k": [data]}
    url = urlsplit(fuzz_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", "/v1/contexts/create", body=b"{}")
        context = json.loads(conn.getresponse().read())["context_id"]
        status = request(conn, "POST", f"/v1/contexts/{context}/append", {"type_id": "t", "type_version": 1,
                                                                            "data": data})
        assert status == (201 if -(2**63) <= number <= 2**64 - 1 else 422)
        if status == 201:
            conn.request("GET", f"/v1/contexts/{context}/turns?u64_format=number")
            stored = json.loads(conn.getresponse().read())["turns"][0]["data"]
            for _ in range(depth):
                stored = stored["k"][0]
            assert stored == {"n": number, "s": text}
    finally:
        conn.close()


async def test_server_is_clean_after_fuzzing(fuzz_server: LiveServer) -> None:
    from cxdb.storage import check

    assert fuzz_server.stop() == 0
    report = await check(Settings(store=fuzz_server.store))
    assert report["counts"]["contexts"] > 0
    assert report["ok"], report["problems"]
