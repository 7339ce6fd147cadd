"""What a running server logs: one access line per request, text or JSON, with the request id on
every line of a request, and slow requests at warning level (issue 12)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.conftest import LiveServer, wait_until


def call(server: LiveServer, method: str, path: str, body: bytes | None = None,
         request_id: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, data=body, method=method)
    if request_id is not None:
        request.add_header("X-Request-Id", request_id)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_json_access_lines_carry_the_request_and_its_id(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--log-format", "json")
    try:
        call(server, "POST", "/v1/contexts/create", b"{}", request_id="agent-7/step-1")
        status, headers, body = call(server, "GET", "/v1/contexts/99/turns", request_id="caf\xe9")
        assert status == 404
        generated = headers["X-Request-Id"]
        assert generated != "caf\xe9" and json.loads(body)["error"]["details"]["request_id"] == generated
        long_id = "x" * 129
        assert call(server, "GET", "/health", request_id=long_id)[1]["X-Request-Id"] != long_id
        wait_until(lambda: server.stderr_text.count('"logger":"cxdb.access"') >= 3)
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.close_streams().splitlines()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "cxdb.access"]
    create = next(line for line in access if line["route"] == "/v1/contexts/create")
    assert create["request_id"] == "agent-7/step-1" and create["status"] == 201 and create["method"] == "POST"
    assert create["bytes"] > 0 and create["duration_ms"] >= 0 and create["level"] == "info"
    missing = next(line for line in access if line["status"] == 404)
    assert missing["route"] == "/v1/contexts/{context_id}/turns"  # the template, never the raw path
    assert missing["request_id"] == generated
    assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_text_lines_and_the_access_log_switch(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "on")
    call(server, "GET", "/v1/stats", request_id="rid-1")
    wait_until(lambda: "cxdb.access" in server.stderr_text)
    assert server.stop() == 0
    line = next(line for line in server.close_streams().splitlines() if "cxdb.access" in line)
    assert "GET /v1/stats 200" in line and line.endswith("request_id=rid-1")

    quiet = LiveServer(tmp_path / "off", "--access-log", "off", "--slow-request-ms", "1")
    call(quiet, "GET", "/health")
    call(quiet, "POST", "/v1/contexts/create", b"{}")
    big = json.dumps({"type_id": "t", "type_version": 1, "data": {"text": "x" * 3_000_000}}).encode()
    assert call(quiet, "POST", "/v1/contexts/1/append", big)[0] == 201  # parsing 3 MB takes over 1 ms
    wait_until(lambda: "(slow)" in quiet.stderr_text)
    assert quiet.stop() == 0
    access = [line for line in quiet.close_streams().splitlines() if "cxdb.access" in line]
    assert access and all("WARNING" in line and "(slow)" in line for line in access)
    assert any("POST /v1/contexts/{context_id}/append 201" in line for line in access)


def test_workers_write_their_lines_while_they_run(tmp_path: Path) -> None:
    """Lines are written in batches by a thread, and threads do not survive fork(): each worker must
    start its own, or its lines would wait for its exit."""
    server = LiveServer(tmp_path / "data", "--workers", "2")
    try:
        for _ in range(6):
            call(server, "GET", "/health")
        wait_until(lambda: server.stderr_text.count("cxdb.access") == 6, timeout=3)
    finally:
        assert server.stop() == 0


def test_lines_of_busy_workers_never_interleave(tmp_path: Path) -> None:
    import concurrent.futures

    server = LiveServer(tmp_path / "data", "--workers", "2", "--log-format", "json")
    try:
        call(server, "POST", "/v1/contexts/create", b"{}")
        body = json.dumps({"type_id": "t", "type_version": 1, "data": {"text": "y" * 2000}}).encode()

        def burst(_: int) -> None:
            for _ in range(60):
                call(server, "POST", "/v1/contexts/1/append", body, request_id="r" * 100)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(burst, range(6)))
    finally:
        assert server.stop() == 0
    lines = server.close_streams().splitlines()
    parsed = [json.loads(line) for line in lines]  # a line cut by another worker's write would not parse
    assert sum(line.get("route") == "/v1/contexts/{context_id}/append" for line in parsed) == 360
