"""--rate-limit on live servers, on each backend: a token bucket per client with its headers on every
response (streams included), 429 RATE_LIMITED with Retry-After and an audit line once it is empty,
refilled at the rate; probes never limited; off by default; bad values refused at start."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from cxdb.config import Rate
from cxdb.http.ratelimit import RateLimiter
from tests.conftest import LiveServer


def get(url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def test_a_client_over_its_bucket_gets_429_with_the_envelope(store_url: str) -> None:
    # 1/min: a whole token comes back only after a minute, so the counts below do not depend on how fast
    # the requests go; the seconds are checked against the bucket's bounds only (the refill itself is
    # tested below with a clock of its own).
    server = LiveServer(store_url, "--rate-limit", "1/min", "--rate-burst", "3")
    try:
        answers = [get(server.url, path) for path in ("/v1/contexts/424242", "/v1/contexts", "/v1/contexts")]
        assert [status for status, _, _ in answers] == [404, 200, 200]  # an error answer takes a token too
        assert [h["x-ratelimit-remaining"] for _, h, _ in answers] == ["2", "1", "0"]
        assert all(h["x-ratelimit-limit"] == "3" and 1 <= int(h["x-ratelimit-reset"]) <= 180
                   for _, h, _ in answers)
        status, headers, body = get(server.url, "/v1/contexts/424242")
        assert status == 429 and json.loads(body)["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-remaining"] == "0"
        assert json.loads(body)["error"]["details"]["retry_after_seconds"] == int(headers["retry-after"])
        assert get(server.url, "/health")[0] == 200  # probes are never limited
        assert "x-ratelimit-limit" not in get(server.url, "/healthz")[1]
    finally:
        assert server.stop() == 0
    assert "denied GET /v1/contexts/{context_id} 429" in server.stderr_text


def test_streams_carry_the_headers_and_limits_are_off_by_default(live_server: LiveServer, store_url: str) -> None:
    assert "x-ratelimit-limit" not in get(live_server.url, "/v1/contexts")[1]
    server = LiveServer(store_url, "--rate-limit", "600/min")
    try:
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", "/v1/events")
            reply = conn.getresponse()
            assert reply.status == 200 and reply.getheader("X-RateLimit-Limit") == "600"
            assert reply.getheader("X-RateLimit-Remaining") == "599"
        finally:
            conn.close()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("value", ["5", "0/s", "5/h", "x/min", "-1/s"])
def test_a_bad_rate_is_refused_at_start(value: str, tmp_path: object) -> None:
    result = subprocess.run([sys.executable, "-m", "cxdb", "serve", "--rate-limit", value, "--port", "0",
                             "--store", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "rate" in result.stderr.lower()


def test_the_bucket_refills_at_the_rate_and_never_past_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(Rate(10, 60), burst=2, clock=lambda: now[0])  # 10/min: one every 6 s
    assert [limiter.take("a").allowed for _ in range(3)] == [True, True, False]
    denied = limiter.take("a")
    assert denied.retry_after == 6 and denied.headers["X-RateLimit-Reset"] == "12"
    assert limiter.take("b").allowed  # another client has its own bucket
    now[0] = 5.9
    assert not limiter.take("a").allowed
    now[0] = 6.1
    assert limiter.take("a").allowed
    now[0] = 1000.0  # a long pause fills it to the burst, no further
    assert [limiter.take("a").allowed for _ in range(3)] == [True, True, False]
