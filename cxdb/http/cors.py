"""CORS: every origin by default, or an allowlist; preflight answered here."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import Handler

__all__ = ["cors_middleware"]

ALLOW_METHODS = "GET, POST, PUT, OPTIONS"
EXPOSE_HEADERS = "ETag, Location, Idempotent-Replayed"  # Location: created contexts and bundles


def cors_middleware(origins: Sequence[str]) -> Middleware:
    allow_all = "*" in origins
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers={"Allow": ALLOW_METHODS})
        else:
            response = await handler(request)
        origin = request.headers.get("Origin")
        if origin is None or not (allow_all or origin in allowed):
            return response
        headers = response.headers
        if allow_all:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            headers["Access-Control-Allow-Origin"] = origin
            headers.add("Vary", "Origin")
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Content-Type, If-None-Match")
            headers["Access-Control-Max-Age"] = "86400"
        return response

    return middleware
