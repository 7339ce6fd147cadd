"""Storage: the :class:`~cxdb.storage.base.Backend` the service layer talks to, and the factory that
opens the one the settings name.

Each backend lives in a package of its own (:mod:`cxdb.storage.lmdb`, :mod:`cxdb.storage.postgres`),
and only that package touches its database library. ``settings.store`` picks one: a directory is an
LMDB store, a ``postgresql://`` URL a PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings, is_database_url
from ..errors import StoreError
from .base import (
    AppendResult,
    Backend,
    CommitObserver,
    Event,
    HeadEntry,
    KeyEntry,
    NewTurn,
    PageStart,
    RegistryMoved,
    Restored,
    RestoredContext,
    RestoredTurn,
    StoredBundle,
)
from .lmdb import Store
from .lmdb.backend import LmdbBackend

__all__ = ["AppendResult", "Backend", "Event", "HeadEntry", "KeyEntry", "NewTurn", "PageStart", "RegistryMoved",
           "Restored", "RestoredContext", "RestoredTurn", "Store", "StoredBundle", "check", "compact", "migrate",
           "open_backend"]

if TYPE_CHECKING:
    from .postgres import PostgresBackend


def _postgres(settings: Settings, on_commit: CommitObserver | None = None, create: bool = True) -> PostgresBackend:
    try:
        from .postgres import PostgresBackend
    except ImportError as exc:  # asyncpg is an extra
        raise StoreError("a postgresql:// store needs the postgres extra: pip install 'cxdb[postgres]'") from exc
    return PostgresBackend(settings.store, settings.pool_size, settings.max_batch, on_commit=on_commit,
                           create=create)


def open_backend(settings: Settings, on_commit: CommitObserver | None = None, create: bool = True) -> Backend:
    """The backend ``settings.store`` names, not yet started (``await backend.start()``). Without
    ``create``, a PostgreSQL database must hold a current schema already (an LMDB directory is the
    caller's to check)."""
    if is_database_url(settings.store):
        return _postgres(settings, on_commit, create)
    return LmdbBackend(Path(settings.store), map_size=settings.map_size, max_batch=settings.max_batch,
                       on_commit=on_commit)


async def migrate(settings: Settings) -> str:
    """Create the store, or bring it up to date: ``"created"``, ``"upgraded"`` or ``"current"``."""
    if not is_database_url(settings.store):
        existed = (Path(settings.store) / "data.mdb").exists()
        Store(settings.store, map_size=settings.map_size).close()  # an older format is upgraded on open
        return "current" if existed else "created"
    backend = _postgres(settings, create=False)
    try:
        return await backend.migrate()
    finally:
        await backend.close()


async def check(settings: Settings) -> dict[str, Any]:
    """``cxdb check``: the integrity report of an existing store, which is only read."""
    if not is_database_url(settings.store):
        with Store(settings.store, map_size=settings.map_size, readonly=True) as store:
            return store.check()
    backend = _postgres(settings, create=False)
    await backend.start()
    try:
        return await backend.check()
    finally:
        await backend.close()


def compact(settings: Settings) -> dict[str, Any]:
    """``cxdb compact``: an LMDB store's file shrunk to what it holds (:mod:`cxdb.storage.lmdb.compact`)."""
    if is_database_url(settings.store):
        raise StoreError("compact is for LMDB stores; PostgreSQL gives space back with VACUUM (autovacuum reuses it; "
                         "VACUUM FULL or pg_repack shrink the files): docs/operations.md")
    from .lmdb.compact import compact as compact_lmdb

    return compact_lmdb(Path(settings.store))
