"""Idempotency keys, scoped to their context.

Sub-database ``idem``: key = context_id u64 BE + the key's UTF-8 bytes (at most
:data:`cxdb.storage.rules.MAX_KEY_BYTES`); value::

    offset  size  field
    0       8     turn_id         u64 BE, the turn the first request created
    8       8     created_at_ms   u64 BE
    16      32    request digest  BLAKE3 of what the request asked for

Keys are kept until they expire (``--idempotency-ttl``, at least the 24 hours
the contract asks for; :mod:`.lifecycle` removes them by the expiry index). A
repeat with the same digest returns the original turn; a repeat with another
digest is a Conflict.
"""

from __future__ import annotations

import struct
from typing import Any

from ...errors import Conflict
from ...model import TurnId
from ..base import KeyEntry
from .expiry import key_key
from .writer import WriteContext

__all__ = ["delete", "entries", "lookup", "remember"]

_VALUE = struct.Struct(">QQ32s")
_U64 = struct.Struct(">Q")


def _key(context_id: int, idempotency_key: str) -> bytes:
    return _U64.pack(context_id) + idempotency_key.encode()


def lookup(txn: Any, idem_db: Any, context_id: int, idempotency_key: str, digest: bytes) -> TurnId | None:
    """The turn a previous request with this key created, or None; Conflict if it asked for other content."""
    value = txn.get(_key(context_id, idempotency_key), db=idem_db)
    if value is None:
        return None
    turn_id, _, stored_digest = _VALUE.unpack(value)
    if stored_digest != digest:
        raise Conflict("idempotency key reused with a different request",
                       {"context_id": str(context_id), "idempotency_key": idempotency_key,
                        "turn_id": str(turn_id)})
    return TurnId(turn_id)


def remember(w: WriteContext, context_id: int, idempotency_key: str, turn_id: int, digest: bytes,
             at_ms: int | None = None) -> None:
    """Record a key (made at ``at_ms``, by default now), replacing one whose turn is gone."""
    at = w.now_ms if at_ms is None else at_ms
    key = _key(context_id, idempotency_key)
    delete(w, key)
    w.txn.put(key, _VALUE.pack(turn_id, at, digest), db=w.dbs.idem)
    w.txn.put(key_key(at, context_id, key[8:]), b"", db=w.dbs.expiry)


def delete(w: WriteContext, key: bytes) -> bool:
    """Remove a key (context_id u64 BE + the key's UTF-8) and its expiry entry; False when absent."""
    value = w.txn.get(key, db=w.dbs.idem)
    if value is None:
        return False
    w.txn.delete(key, db=w.dbs.idem)
    w.txn.delete(key_key(_VALUE.unpack(value)[1], _U64.unpack_from(key)[0], bytes(key[8:])), db=w.dbs.expiry)
    return True


def entries(txn: Any, idem_db: Any, context_id: int, after: str | None, limit: int) -> list[KeyEntry]:
    """Up to ``limit`` keys of a context, in byte order, those after ``after`` when given."""
    prefix = _U64.pack(context_id)
    cursor = txn.cursor(db=idem_db)
    found: list[KeyEntry] = []
    start = prefix + after.encode() + b"\x00" if after is not None else prefix
    if limit <= 0 or not cursor.set_range(start):
        return found
    for key, value in cursor:
        if not key.startswith(prefix):
            break
        turn_id, created, digest = _VALUE.unpack(value)
        found.append(KeyEntry(bytes(key[8:]).decode(), turn_id, created, digest))
        if len(found) >= limit:
            break
    return found
