"""Storage: the only code that touches LMDB. See :mod:`cxdb.storage.env` for the layout."""

from .bundles import StoredBundle
from .store import AppendResult, RegistryMoved, Store

__all__ = ["AppendResult", "RegistryMoved", "Store", "StoredBundle"]
