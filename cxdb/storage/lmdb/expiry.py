"""The expiry index: head-history entries and idempotency keys by age, so expiring them reads only
what expires.

Sub-database ``expiry``: key = ``b"h"`` + replaced_at_ms u64 BE + context_id u64 BE +
replaced_by_turn_id u64 BE for a head-history entry, ``b"k"`` + created_at_ms u64 BE + context_id
u64 BE + the key's UTF-8 for an idempotency key; empty values. Written and deleted with the entries.
"""

from __future__ import annotations

import struct

__all__ = ["history_key", "key_key", "split"]

_AT = struct.Struct(">QQ")
_BY = struct.Struct(">Q")


def history_key(at_ms: int, context_id: int, replaced_by: int) -> bytes:
    return b"h" + _AT.pack(at_ms, context_id) + _BY.pack(replaced_by)


def key_key(at_ms: int, context_id: int, idempotency_key: bytes) -> bytes:
    return b"k" + _AT.pack(at_ms, context_id) + idempotency_key


def split(key: bytes) -> tuple[int, int, bytes]:
    """(at_ms, context_id, the rest: replaced_by u64 BE or the key's UTF-8)."""
    at_ms, context_id = _AT.unpack_from(key, 1)
    return at_ms, context_id, bytes(key[17:])
