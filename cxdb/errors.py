"""The one exception hierarchy of cxdb.

Everything cxdb raises derives from :class:`CxdbError`. Each class has a stable
``code`` (the contract's error code) and every instance carries structured
``details``. Library errors (lmdb, zstd, msgpack, JSON) are translated into
this tree where they arise, with ``raise ... from exc``.

::

    CxdbError                      INTERNAL_ERROR
    ├── BadRequest                 BAD_REQUEST
    │   └── PayloadTooLarge        PAYLOAD_TOO_LARGE
    ├── Unauthorized               UNAUTHORIZED
    ├── NotFound                   NOT_FOUND
    ├── MethodNotAllowed           METHOD_NOT_ALLOWED
    ├── Conflict                   CONFLICT
    ├── PreconditionFailed         PRECONDITION_FAILED
    ├── Unprocessable              UNPROCESSABLE_ENTITY
    ├── FailedDependency           FAILED_DEPENDENCY
    ├── TooManyStreams             TOO_MANY_STREAMS
    ├── RateLimited                RATE_LIMITED
    ├── StoreError                 INTERNAL_ERROR
    │   ├── Corrupt                CORRUPT
    │   ├── StoreFull              STORE_FULL
    │   ├── FormatMismatch         FORMAT_MISMATCH
    │   ├── StoreClosed            STORE_CLOSED
    │   └── StoreUnavailable       STORE_UNAVAILABLE
    └── TransportError             TRANSPORT_ERROR   (client side only)

:data:`HTTP_STATUS` is the one table of statuses: the server resolves an
exception's status along its MRO, and the client maps a status back to its
class.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "HTTP_STATUS",
    "error_class",
    "BadRequest",
    "Conflict",
    "Corrupt",
    "CxdbError",
    "FailedDependency",
    "Forbidden",
    "FormatMismatch",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "StoreClosed",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "RateLimited",
    "TooManyStreams",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
]


class CxdbError(Exception):
    """Root of every error cxdb raises.

    ``code`` is stable and machine-readable; ``message`` is for people;
    ``details`` is a JSON-ready mapping naming what was wrong.
    """

    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.status = status
        """The HTTP status, when the error came back from a server."""
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The contract's error envelope for this error."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(CxdbError):
    """The request itself is malformed: bad JSON, a bad query parameter."""

    code = "BAD_REQUEST"


class PayloadTooLarge(BadRequest):
    """The request body is over the configured limit."""

    code = "PAYLOAD_TOO_LARGE"


class Unauthorized(CxdbError):
    """Missing or invalid credentials."""

    code = "UNAUTHORIZED"


class Forbidden(CxdbError):
    """Valid credentials without the scope a route needs."""

    code = "FORBIDDEN"


class NotFound(CxdbError):
    """The named resource does not exist."""

    code = "NOT_FOUND"


class MethodNotAllowed(CxdbError):
    """The route exists but not with this method."""

    code = "METHOD_NOT_ALLOWED"


class Conflict(CxdbError):
    """The operation conflicts with stored state (bad parent, registry evolution)."""

    code = "CONFLICT"


class PreconditionFailed(CxdbError):
    """A server precondition is not met, such as a required registry entry."""

    code = "PRECONDITION_FAILED"


class Unprocessable(CxdbError):
    """The request is well-formed but its content is invalid."""

    code = "UNPROCESSABLE_ENTITY"


class FailedDependency(CxdbError):
    """A type descriptor the request depends on does not exist."""

    code = "FAILED_DEPENDENCY"


class RateLimited(CxdbError):
    """The client sent more requests than ``--rate-limit`` allows: try again after ``Retry-After``."""

    code = "RATE_LIMITED"


class TooManyStreams(CxdbError):
    """The server serves as many event streams as it may (``--max-streams``): try again shortly."""

    code = "TOO_MANY_STREAMS"


class StoreError(CxdbError):
    """The store could not do what was asked for a reason of its own."""

    code = "INTERNAL_ERROR"


class Corrupt(StoreError):
    """Stored bytes do not decode or do not match their hash."""

    code = "CORRUPT"


class StoreFull(StoreError):
    """The store cannot grow any further."""

    code = "STORE_FULL"


class FormatMismatch(StoreError):
    """The data directory was written with format parameters this build does not read."""

    code = "FORMAT_MISMATCH"


class StoreClosed(StoreError):
    """The store has been closed."""

    code = "STORE_CLOSED"


class StoreUnavailable(StoreError):
    """The database cannot be reached now (a server backend lost its connection): try again shortly."""

    code = "STORE_UNAVAILABLE"


class TransportError(CxdbError):
    """The client could not reach the server or read its answer."""

    code = "TRANSPORT_ERROR"


HTTP_STATUS: dict[type[CxdbError], int] = {
    CxdbError: 500,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    Unprocessable: 422,
    FailedDependency: 424,
    RateLimited: 429,
    StoreClosed: 503,
    StoreUnavailable: 503,
    TooManyStreams: 503,
    StoreFull: 507,
}
"""The HTTP status of each error class; a subclass without a row takes its nearest ancestor's."""

_BY_STATUS: dict[int, type[CxdbError]] = {}
for _klass, _status in HTTP_STATUS.items():
    _BY_STATUS.setdefault(_status, _klass)  # the first class listed for a status is the one it means


def error_class(status: int, default: type[CxdbError]) -> type[CxdbError]:
    """The error class :data:`HTTP_STATUS` gives ``status``, or ``default`` when none has it."""
    return _BY_STATUS.get(status, default)
