"""CORS: every origin by default, or an allowlist; preflight answered here, before access control (a
preflight carries no token). ``Access-Control-Allow-Credentials`` is never sent: browser clients send
their token in ``Authorization``, never in a cookie, so ``*`` never pairs with credentials."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from ..errors import NotFound
from .errors import error_response

__all__ = ["Cors"]

# Location: created contexts and bundles; the rest tell a browser client why it was refused and when to retry.
EXPOSE_HEADERS = ("ETag, Location, Idempotent-Replayed, X-Request-Id, WWW-Authenticate, Retry-After, "
                  "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
ALLOW_HEADERS = "Authorization, Content-Type, If-None-Match, Last-Event-ID, X-Request-Id"


class Cors:
    """CORS for every response, and the answer to ``OPTIONS`` (preflight or not)."""

    def __init__(self, origins: Sequence[str]) -> None:
        self._allow_all = "*" in origins
        self._allowed = frozenset(origins)

    @staticmethod
    def options(request: web.Request, request_id: str | None) -> web.Response:
        """204 with the path's methods in ``Allow``; 404 for a path no route has."""
        methods = _methods(request)
        if methods is None:
            return error_response(NotFound("No such route", {}), request_id=request_id)
        return web.Response(status=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})

    def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add the CORS headers a response to an allowed origin carries."""
        origin = request.headers.get("Origin")
        if origin is None or not (self._allow_all or origin in self._allowed):
            return
        headers = response.headers
        if self._allow_all:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            headers["Access-Control-Allow-Origin"] = origin
            headers.add("Vary", "Origin")
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS" and response.status == 204:
            headers["Access-Control-Allow-Methods"] = headers["Allow"]
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", ALLOW_HEADERS)
            headers["Access-Control-Max-Age"] = "86400"


def _methods(request: web.Request) -> set[str] | None:
    """The methods the request's path answers, or None when no route has that path."""
    failure = request.match_info.http_exception
    if failure is None:
        resource = request.match_info.route.resource
        return {route.method for route in resource} if resource is not None else set()
    if failure.status == 405:
        return set(getattr(failure, "allowed_methods", ()))
    return None
