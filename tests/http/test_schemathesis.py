"""Fuzzing a live server from its own OpenAPI document (issue 12).

Schemathesis generates requests for every operation from /openapi.json and checks each answer: no 5xx,
a documented status, the documented content type and schema. Afterwards the server must be healthy
and its store clean. The number of examples is bounded so the run stays well under two minutes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cxdb import Client
from cxdb.config import is_database_url
from cxdb.http.openapi import build_spec
from tests.conftest import LiveServer

# The streams never end, so each fuzzed call would wait out the client's timeout: their bad input,
# filters and events' conformance to the spec are tested in tests/http/test_events.py and
# tests/http/test_follow.py instead.
SCHEMA = schemathesis.openapi.from_dict(build_spec()).exclude(path="/v1/events").exclude(
    path="/v1/contexts/{context_id}/follow")


@schemathesis.serializer("application/x-ndjson", "application/zstd")
def _as_bytes(context: schemathesis.SerializationContext, value: object) -> bytes:
    """An import body: the generated string's bytes (a fuzzed export, refused line by line)."""
    return value if isinstance(value, bytes) else str(value).encode()


# What issue 12 asks of every answer: no 5xx, a documented status, content type, headers and schema.
# (Schemathesis's data-acceptance checks are left out: a JSON Schema cannot say "at most 400 bytes of
# UTF-8", nor tell 1e300 from an integer literal, both of which the server tells apart.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_server(module_store_url: str) -> Iterator[LiveServer]:
    server = LiveServer(module_store_url)
    with Client(server.url) as client:  # something to find: a context with turns, a bundle
        context = client.create_context()
        for n in range(3):
            client.append_turn(context.context_id, {"type_id": "t", "type_version": 1, "data": {"n": n}})
    yield server
    assert server.stop() == 0


@SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case: schemathesis.Case, fuzzed_server: LiveServer) -> None:
    case.call_and_validate(base_url=fuzzed_server.url, checks=CHECKS)


def test_the_fuzzed_server_is_healthy_and_its_store_clean(fuzzed_server: LiveServer, tmp_path: Path) -> None:
    with Client(fuzzed_server.url) as client:
        assert client.health()["status"] == "ok"
    checked = fuzzed_server.store
    if not is_database_url(checked):  # a consistent copy of the live LMDB store
        checked = str(tmp_path / "copy")
        assert subprocess.run([sys.executable, "-m", "cxdb", "backup", checked, "--store",
                               fuzzed_server.store], capture_output=True).returncode == 0
    result = subprocess.run([sys.executable, "-m", "cxdb", "check", "--store", checked],
                            capture_output=True, text=True)
    assert result.returncode == 0 and '"ok": true' in result.stdout
