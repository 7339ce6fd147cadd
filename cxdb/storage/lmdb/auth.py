"""Access-control records (the per-store secret, the tokens), kept in the ``meta`` sub-database.

Layout: key ``b"a:" + name`` (UTF-8) -> the value the service layer gave, as given. The service
(:mod:`cxdb.service.tokens`) owns what the names and values mean; here they are bytes.
"""

from __future__ import annotations

from typing import Any

from .writer import WriteContext

__all__ = ["delete", "get", "put", "scan"]

_PREFIX = b"a:"


def get(txn: Any, meta_db: Any, name: str) -> bytes | None:
    value = txn.get(_PREFIX + name.encode(), db=meta_db)
    return bytes(value) if value is not None else None


def put(w: WriteContext, name: str, value: bytes, replace: bool) -> bytes:
    """Store ``value`` under ``name``; without ``replace`` an existing value stays. Returns what is stored."""
    key = _PREFIX + name.encode()
    if not replace:
        found = w.txn.get(key, db=w.dbs.meta)
        if found is not None:
            return bytes(found)
    w.txn.put(key, value, db=w.dbs.meta)
    return value


def delete(w: WriteContext, name: str) -> None:
    w.txn.delete(_PREFIX + name.encode(), db=w.dbs.meta)


def scan(txn: Any, meta_db: Any, prefix: str, limit: int) -> list[tuple[str, bytes]]:
    """Up to ``limit`` entries whose names start with ``prefix``, in name order."""
    start = _PREFIX + prefix.encode()
    found: list[tuple[str, bytes]] = []
    cursor = txn.cursor(db=meta_db)
    if not cursor.set_range(start):
        return found
    for key, value in cursor:
        if not key.startswith(start) or len(found) >= limit:
            break
        found.append((bytes(key[len(_PREFIX):]).decode(), bytes(value)))
    return found
