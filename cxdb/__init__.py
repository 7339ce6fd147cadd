"""cxdb: an AI context store.

``from cxdb import Client`` gives the HTTP client; it never touches LMDB.
"""

from typing import TYPE_CHECKING

from .client import Client, Rebase, Record, Turn
from .errors import (
    BadRequest,
    Conflict,
    CxdbError,
    FailedDependency,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    TransportError,
    Unauthorized,
    Unprocessable,
)

if TYPE_CHECKING:
    from .client.aio import AsyncClient

__version__ = "1.0.0"

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "CxdbError",
    "FailedDependency",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Rebase",
    "Record",
    "TransportError",
    "Turn",
    "Unauthorized",
    "Unprocessable",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "AsyncClient":
        from .client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(name)
