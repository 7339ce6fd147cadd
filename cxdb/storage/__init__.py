"""Storage: the only code that touches LMDB. See :mod:`cxdb.storage.env` for the layout."""

from .bundles import StoredBundle
from .store import AppendResult, Store

__all__ = ["AppendResult", "Store", "StoredBundle"]
