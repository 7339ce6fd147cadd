"""CORS: every origin by default, or an allowlist; preflight answered here."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import NotFound
from .errors import Handler, error_response
from .keys import REQUEST_ID

__all__ = ["cors_middleware"]

EXPOSE_HEADERS = "ETag, Location, Idempotent-Replayed, X-Request-Id"  # Location: created contexts and bundles


def cors_middleware(origins: Sequence[str]) -> Middleware:
    allow_all = "*" in origins
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        allow = ""
        if request.method == "OPTIONS":
            methods = _methods(request)
            if methods is None:
                return error_response(NotFound("No such route", {}), request_id=request.get(REQUEST_ID))
            allow = ", ".join(sorted(methods | {"OPTIONS"}))
            response: web.StreamResponse = web.Response(status=204, headers={"Allow": allow})
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
            headers["Access-Control-Allow-Methods"] = allow
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Content-Type, If-None-Match")
            headers["Access-Control-Max-Age"] = "86400"
        return response

    return middleware


def _methods(request: web.Request) -> set[str] | None:
    """The methods the request's path answers, or None when no route has that path."""
    failure = request.match_info.http_exception
    if failure is None:
        resource = request.match_info.route.resource
        return {route.method for route in resource} if resource is not None else set()
    if failure.status == 405:
        return set(getattr(failure, "allowed_methods", ()))
    return None
