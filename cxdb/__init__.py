"""cxdb: an AI context store."""

from .errors import (
    BadRequest,
    Conflict,
    CxdbError,
    FailedDependency,
    NotFound,
    PreconditionFailed,
    TransportError,
    Unprocessable,
)

__version__ = "1.0.0"

__all__ = [
    "BadRequest",
    "Conflict",
    "CxdbError",
    "FailedDependency",
    "NotFound",
    "PreconditionFailed",
    "TransportError",
    "Unprocessable",
    "__version__",
]
