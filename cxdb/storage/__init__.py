"""Storage: the store the service layer talks to.

Each backend lives in a package of its own (:mod:`cxdb.storage.lmdb`), and only that package
touches its database library.
"""

from .lmdb import AppendResult, RegistryMoved, Store, StoredBundle

__all__ = ["AppendResult", "RegistryMoved", "Store", "StoredBundle"]
