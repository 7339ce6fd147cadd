"""HTTP clients for cxdb. They import nothing from the storage layer."""

from ._common import Rebase, Record, Turn
from .sync import Client

__all__ = ["AsyncClient", "Client", "Rebase", "Record", "Turn"]


def __getattr__(name: str) -> object:
    if name == "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient
    raise AttributeError(name)
