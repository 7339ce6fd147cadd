"""The API describes itself: the OpenAPI document is valid 3.1 and matches the router exactly, /docs is
served entirely by cxdb, and /llms.txt's calls work (issue 12)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from cxdb.config import Settings
from cxdb.http import create_app
from cxdb.http.describe import LLMS_TXT
from cxdb.http.openapi import build_spec
from tests.conftest import LiveServer

Client = TestClient[Any, Any]
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def routed() -> set[tuple[str, str]]:
    app = create_app(Settings())
    pairs = {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
             if route.resource is not None}
    heads = {path for method, path in pairs if method == "head"}
    gets = {path for method, path in pairs if method == "get"}
    assert heads <= gets  # aiohttp answers HEAD for every GET: the spec's GET describes both
    return {(method, path) for method, path in pairs if method != "head"}


def documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in build_spec()["paths"].items() for method in item if method in METHODS}


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = build_spec()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    assert routed() - documented() == set(), "routes missing from the spec"
    assert documented() - routed() == set(), "spec paths no route serves"


def test_every_operation_documents_the_error_envelope() -> None:
    for path, item in build_spec()["paths"].items():
        for method, operation in item.items():
            assert "400" in operation["responses"] and "500" in operation["responses"], (method, path)
            assert operation["operationId"]


async def test_openapi_json_is_the_document(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == build_spec()


async def test_docs_page_is_served_entirely_by_cxdb(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    references = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r'url: "([^"]+)"', page)
    assert len(references) >= 4
    assert "validatorUrl: null" in page  # Swagger UI would otherwise send the document to swagger.io
    for reference in references:
        assert not re.match(r"^(?:[a-z]+:)?//", reference), f"{reference} would leave the machine"
        asset = await client.get("/" + reference)
        assert asset.status == 200, reference
        assert len(await asset.read()) > 0
    assert (await client.get("/docs/swagger-ui-bundle.js")).content_type == "text/javascript"
    await_missing = await client.get("/docs/nope.js")
    assert await_missing.status == 404
    assert (await client.get("/docs/..%2Fopenapi.py")).status in (400, 404)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed")
def test_the_calls_in_llms_txt_work(tmp_path: Path) -> None:
    calls = re.findall(r"^    (curl .*?)(?=^    #|^\S|\Z)", LLMS_TXT, re.S | re.M)
    assert len(calls) == 5
    server = LiveServer(tmp_path / "data")
    try:
        for call in calls:
            script = "set -euo pipefail\n" + call.replace("http://127.0.0.1:9010", server.url)
            result = subprocess.run(["bash", "-c", script.replace("curl -s", "curl -sS --fail-with-body")],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (call, result.stdout, result.stderr)
    finally:
        assert server.stop() == 0


def test_the_conformance_check_catches_a_renamed_field_and_an_undocumented_status() -> None:
    from tests.conformance import check

    good = b'{"status": "ok", "version": "1.0.0", "uptime_seconds": 3}'
    assert check("/health", "GET", 200, "application/json", good) is None
    renamed = b'{"status": "ok", "version": "1.0.0", "uptime": 3}'
    assert "uptime" in (check("/health", "GET", 200, "application/json", renamed) or "")
    assert "does not document" in (check("/health", "GET", 409, "application/json", good) or "")
    envelope = b'{"error": {"code": "NOT_FOUND", "message": "x", "details": {}}}'
    assert check(None, "GET", 404, "application/json", envelope) is None
    assert check(None, "GET", 404, "application/json", b'{"error": "x"}') is not None


def test_the_routes_named_in_the_http_docs_are_the_spec_s() -> None:
    from tests.conftest import REPO

    text = (REPO / "docs" / "http-api.md").read_text()
    named = {(method.lower(), path) for method, path in re.findall(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`\s?]*)`", text)}
    assert named, "no route named"
    assert named - documented() == set(), "docs name routes the spec does not have"
    assert documented() - named == set(), "spec operations the docs do not name"
