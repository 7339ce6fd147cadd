"""The one place that turns exceptions into HTTP error responses.

:data:`cxdb.errors.HTTP_STATUS` maps exception classes to statuses and is
resolved along the MRO, so a subclass inherits its parent's status unless it
has its own row.
Every error body is the contract's envelope. A 500 is logged with its
traceback and answers a generic message, never internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ..errors import (
    HTTP_STATUS,
    BadRequest,
    CxdbError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    error_class,
)

__all__ = ["DISCONNECTED", "Handler", "answer", "error_response", "status_for"]

log = logging.getLogger("cxdb.http")
RETRY_AFTER_SECONDS = "1"


def status_for(exc: CxdbError) -> int:
    for klass in type(exc).__mro__:
        if klass in HTTP_STATUS:
            return HTTP_STATUS[klass]
    return 500


def error_response(exc: CxdbError, headers: dict[str, str] | None = None,
                   request_id: str | None = None) -> web.Response:
    """The envelope for ``exc``; ``details.request_id`` names the request, so a report can be matched to
    the server's log lines."""
    status = status_for(exc)
    body = exc.to_dict()
    if status == 500:
        body = {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error", "details": {}}}
    elif status > 500:
        body = {"error": {"code": exc.code, "message": exc.message, "details": {}}}
    if request_id is not None:
        body["error"]["details"] = {**body["error"]["details"], "request_id": request_id}
    if status == 503:  # the store is closing or its database is out of reach: both pass
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER_SECONDS}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)


def _from_http(exc: web.HTTPException) -> CxdbError:
    klass = error_class(exc.status, BadRequest if exc.status < 500 else CxdbError)
    if exc.status == 404:
        return NotFound("No such route", {})
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        return MethodNotAllowed("Method not allowed", {"allowed_methods": allowed})
    if exc.status == 413:
        return PayloadTooLarge("Request body too large", {})
    return klass(exc.reason or "Request failed", {})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DISCONNECTED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""What reading a request raises when its client went away: not a server error."""


async def answer(request: web.Request, handler: Handler, request_id: str | None) -> web.StreamResponse:
    """The handler's response, or the envelope for whatever it raised: the one place where exceptions
    become statuses (called by the front middleware, :mod:`cxdb.http.front`)."""
    try:
        return await handler(request)
    except (HttpProcessingError, RequestPayloadError) as exc:  # bad Content-Encoding, bad chunking
        reason = exc.message if isinstance(exc, HttpProcessingError) else str(exc).split("message:")[-1].strip()
        response = error_response(BadRequest(f"The request body could not be read: {reason}", {}),
                                  request_id=request_id)
        # The rest of the body cannot be read either: end it here (aiohttp would try to drain it and log
        # the same failure as unhandled) and close the connection after this answer.
        request.content.feed_eof()
        response.force_close()
        return response
    except DISCONNECTED as exc:
        log.debug("%s %s: client disconnected: %s", request.method, request.path, exc)
        # Nobody reads this answer; aiohttp drops it quietly when the transport is gone.
        return error_response(BadRequest("The client disconnected", {}), request_id=request_id)
    except CxdbError as exc:
        status = status_for(exc)
        if status == 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.message, exc_info=exc)
        elif status > 500:  # a known condition (full disk, closing): one line, no traceback
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        return error_response(exc, request_id=request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers: dict[str, Any] = {}
        if exc.status == 405:
            headers["Allow"] = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return error_response(_from_http(exc), headers=headers or None, request_id=request_id)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(CxdbError("Internal server error", {"reason": type(exc).__name__}),
                              request_id=request_id)
