"""The front door: the one middleware every request passes through.

One layer, because each aiohttp middleware costs every request a wrapper call. In order, it:

- gives the request its id (the client's sane ``X-Request-Id``, or a new one), which goes on every log
  line of the request, into every error envelope and into the ``X-Request-Id`` header;
- tells the connection a handler has the request (:mod:`cxdb.http.server`: the header deadline ends,
  the body's begins);
- answers ``OPTIONS`` (:mod:`cxdb.http.cors`), or 401/403 when the request's token does not allow
  the route (:mod:`cxdb.http.access`), or 429 when the client is over ``--rate-limit``
  (:mod:`cxdb.http.ratelimit`), or calls the handler through the one place that turns exceptions into
  error responses (:func:`cxdb.http.errors.answer`);
- adds the CORS headers;
- counts the request in the metrics and writes its access line (slow requests at warning level, access
  log or not). The time is the handler's, up to the response being ready to send.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..config import Settings
from ..errors import CxdbError, Forbidden, RateLimited, Unauthorized
from ..logs import REQUEST_ID as REQUEST_ID_VAR
from ..service.tokens import Grant
from .access import GRANT, Access, audit, challenge
from .cors import Cors
from .errors import Handler, answer, error_response
from .keys import REQUEST_ID, SERVICE
from .ratelimit import EXEMPT, RATE_HEADERS, RateLimiter
from .server import Connection

__all__ = ["REQUEST_IDS", "RequestIds", "front_middleware"]

MAX_REQUEST_ID = 128


class RequestIds:
    """New request ids: a random prefix per app (so per worker) and a counter. Unique without a system
    call for randomness on every request."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(5)
        self._next = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}-{next(self._next):x}"


REQUEST_IDS = web.AppKey("request_ids", RequestIds)


def _request_id(given: str | None, ids: RequestIds) -> str:
    """The client's ``X-Request-Id`` when it is sane (printable ASCII, at most 128 characters), else a new one."""
    if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable() and given.strip():
        return given
    return ids.new()


def front_middleware(settings: Settings, access: Access | None = None) -> Middleware:
    cors = Cors(settings.cors_origins)
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit is not None else None
    access_on = settings.access_log
    slow_seconds = settings.slow_request_ms / 1000

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        app = request.app
        request_id = _request_id(request.headers.get("X-Request-Id"), app[REQUEST_IDS])
        request[REQUEST_ID] = request_id
        token = REQUEST_ID_VAR.set(request_id)
        protocol = request.protocol
        connection = protocol if isinstance(protocol, Connection) else None  # test servers run without deadlines
        if connection is not None:
            connection.request = request
            connection.head_since = None
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else NO_ROUTE
        try:
            if request.method == "OPTIONS":
                response: web.StreamResponse = cors.options(request, request_id)
            else:
                response = await _admit(request, route, request_id, access, limiter, handler)
        finally:
            if connection is not None:
                connection.request = None
            REQUEST_ID_VAR.reset(token)
        cors.decorate(request, response)
        response.headers["X-Request-Id"] = request_id
        seconds = time.perf_counter() - started
        service = app.get(SERVICE)
        if service is not None and service.metrics is not None:
            service.metrics.observe_request(route, request.method, response.status, seconds)
        slow = seconds >= slow_seconds
        if (access_on or slow) and ACCESS.isEnabledFor(logging.WARNING if slow else logging.INFO):
            _log_access(request, response, route, seconds, request_id, slow)
        return response

    return front


NO_ROUTE = "(no route)"


async def _admit(request: web.Request, route: str, request_id: str, access: Access | None,
                 limiter: RateLimiter | None, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or the 401/403 of a token that does not allow the route, or the 429 of a
    client over its rate. A refused request takes from its address's bucket, so strangers cannot
    make the server check tokens without bound."""
    refused: CxdbError | None = None
    if access is not None:
        try:
            request[GRANT] = await access.check(request, None if route == NO_ROUTE else route)
        except (Unauthorized, Forbidden) as exc:
            refused = exc
        except CxdbError as exc:  # the store could not be asked (closing, unreachable)
            return error_response(exc, None, request_id)
        except Exception:  # a bug: the envelope, never internals
            ACCESS.exception("checking the token of %s %s failed", request.method, route)
            return error_response(CxdbError("Internal server error", {}), None, request_id)
    grant = request.get(GRANT)
    headers: dict[str, str] = {}
    if limiter is not None and route not in EXEMPT:
        decision = limiter.take(_client(grant, request))
        headers = decision.headers
        if not decision.allowed:
            refused = RateLimited("too many requests: try again after Retry-After seconds",
                                  {"retry_after_seconds": decision.retry_after})
            headers = {**headers, "Retry-After": str(decision.retry_after)}
    if refused is None:
        if headers:
            request[RATE_HEADERS] = headers
        return await answer(request, handler, request_id)
    if isinstance(refused, Unauthorized):
        headers = {**headers, **challenge(refused)}
    response = error_response(refused, headers, request_id)
    audit("denied", request, route, response.status, grant.token_id if grant is not None else None)
    return response


def _client(grant: Grant | None, request: web.Request) -> str:
    """Whose bucket a request takes from: its token's, else its address's."""
    return "t:" + grant.token_id if grant is not None else "a:" + (request.remote or "")


ACCESS = logging.getLogger("cxdb.access")


def _log_access(request: web.Request, response: web.StreamResponse, route: str, seconds: float,
                request_id: str, slow: bool) -> None:
    """One access line: the request, its route template, status, time to answer and body bytes.
    Slow requests (``--slow-request-ms``) come at warning level, access log or not."""
    body = getattr(response, "body", None)
    size = len(body) if isinstance(body, bytes) else (response.content_length or 0)
    duration_ms = round(seconds * 1000, 3)
    grant = request.get(GRANT)
    token_id = grant.token_id if grant is not None else None
    ACCESS.log(logging.WARNING if slow else logging.INFO, "%s %s %d %.1f ms %d B%s%s", request.method, route,
               response.status, duration_ms, size, f" token={token_id}" if token_id else "",
               " (slow)" if slow else "",
               extra={"method": request.method, "route": route, "status": response.status,
                      "duration_ms": duration_ms, "bytes": size, "remote": request.remote,
                      "request_id": request_id, "token_id": token_id})
