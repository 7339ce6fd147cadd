"""Idempotency keys, scoped to their context.

Sub-database ``idem``: key = context_id u64 BE + the key's UTF-8 bytes (at most
:data:`cxdb.storage.rules.MAX_KEY_BYTES`); value::

    offset  size  field
    0       8     turn_id         u64 BE, the turn the first request created
    8       8     created_at_ms   u64 BE
    16      32    request digest  BLAKE3 of what the request asked for

Keys are kept for the life of the store, which is longer than the 24 hours
the contract asks for. A repeat with the same digest returns the original
turn; a repeat with another digest is a Conflict.
"""

from __future__ import annotations

import struct
from typing import Any

from ...errors import Conflict
from ...model import TurnId
from ..base import KeyEntry
from .writer import WriteContext

__all__ = ["entries", "lookup", "remember"]

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
    """Record a key (made at ``at_ms``, by default now)."""
    w.txn.put(_key(context_id, idempotency_key),
              _VALUE.pack(turn_id, w.now_ms if at_ms is None else at_ms, digest), db=w.dbs.idem)


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
