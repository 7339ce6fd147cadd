"""``--rate-limit``: a token bucket per client, and the headers that tell a client where it stands.

A bucket holds at most ``--rate-burst`` tokens (by default the N of ``N/s`` or ``N/min``) and refills
at the rate. Each request takes one; a request that finds none is answered 429 ``RATE_LIMITED`` with
``Retry-After``, before its handler runs. Every other response carries ``X-RateLimit-Limit`` (the
bucket's size), ``X-RateLimit-Remaining`` (whole tokens left) and ``X-RateLimit-Reset`` (seconds until
the bucket is full again). Liveness probes (``/health``, ``/healthz``) and CORS preflights are never
limited.

Clients are told apart by token (its id) under ``--auth tokens``, else by address. Buckets live in each
server process (under ``--workers N`` a client's limit is per worker), in an LRU bounded in bytes: a
client pushed out starts again with a full bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..cache import LruCache
from ..config import Rate

__all__ = ["EXEMPT", "RATE_HEADERS", "Decision", "RateLimiter", "add_rate_headers"]

EXEMPT = frozenset({"/health", "/healthz"})
BUCKET_BYTES = 8 * 1024 * 1024
BUCKET_OVERHEAD = 160
"""What one bucket costs beyond its key, roughly: the tuple, two floats and the LRU's entry."""
RATE_HEADERS: web.RequestKey[dict[str, str]] = web.RequestKey("rate_headers", dict)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int


class RateLimiter:
    """Token buckets keyed by client, refilled at ``rate``, holding at most ``burst``."""

    def __init__(self, rate: Rate, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = rate.per_second
        self._burst = burst or rate.count
        self._clock = clock
        self._buckets: LruCache[str, tuple[float, float]] = LruCache(
            BUCKET_BYTES, lambda bucket: BUCKET_OVERHEAD)

    def take(self, client: str) -> Decision:
        now = self._clock()
        found = self._buckets.get(client)
        tokens = float(self._burst) if found is None else min(
            self._burst, found[0] + (now - found[1]) * self._per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets.put(client, (tokens, now))
        full_in = math.ceil((self._burst - tokens) / self._per_second)
        headers = {"X-RateLimit-Limit": str(self._burst), "X-RateLimit-Remaining": str(int(tokens)),
                   "X-RateLimit-Reset": str(full_in)}
        return Decision(allowed, headers, 0 if allowed else max(1, math.ceil((1 - tokens) / self._per_second)))


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers go on every response, streams included."""
    headers = request.get(RATE_HEADERS)
    if headers:
        response.headers.update(headers)

