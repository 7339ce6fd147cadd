"""Storage: the :class:`~cxdb.storage.base.Backend` the service layer talks to, and the factory that
opens the one the settings name.

Each backend lives in a package of its own (:mod:`cxdb.storage.lmdb`), and only that package touches
its database library.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from .base import AppendResult, Backend, PageStart, RegistryMoved, StoredBundle
from .lmdb import Store
from .lmdb.backend import LmdbBackend
from .lmdb.writer import CommitObserver

__all__ = ["AppendResult", "Backend", "PageStart", "RegistryMoved", "Store", "StoredBundle", "open_backend"]


def open_backend(settings: Settings, on_commit: CommitObserver | None = None) -> Backend:
    """The backend the settings name: today the LMDB environment in ``settings.data_dir``."""
    return LmdbBackend(Path(settings.data_dir), map_size=settings.map_size, max_batch=settings.max_batch,
                       on_commit=on_commit)
