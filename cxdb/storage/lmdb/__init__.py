"""The LMDB backend: one environment, one writer thread with group commit, workers sharing it.

The only code that touches LMDB. See :mod:`cxdb.storage.lmdb.env` for the layout.
"""

from ..base import AppendResult, RegistryMoved, StoredBundle
from .store import Store

__all__ = ["AppendResult", "RegistryMoved", "Store", "StoredBundle"]
