"""Head history: the heads a context had until an append moved it to a turn that does not descend
from them, so no acknowledged turn becomes unreachable.

Sub-database ``heads``: key = context_id u64 BE + replaced_by_turn_id u64 BE (turn ids grow in commit
order, so a context's entries sort oldest first and a cursor walks them newest first); value (24
bytes) = head_turn_id, head_depth, replaced_at_ms, each u64 BE.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from ..base import HeadEntry
from .expiry import history_key
from .writer import WriteContext

__all__ = ["decode_key", "decode_value", "delete", "entries_of", "heads_of", "list_entries", "record", "replaced_by"]

_KEY = struct.Struct(">QQ")
_VALUE = struct.Struct(">QQQ")


def record(w: WriteContext, context_id: int, head_turn_id: int, head_depth: int, replaced_by: int,
           at_ms: int | None = None) -> None:
    """Record a replaced head (at ``at_ms``, by default now), and index it by age. The caller counts
    the reference the entry holds on the head (:mod:`.refs`)."""
    at = w.now_ms if at_ms is None else at_ms
    w.txn.put(_KEY.pack(context_id, replaced_by), _VALUE.pack(head_turn_id, head_depth, at), db=w.dbs.heads)
    w.txn.put(history_key(at, context_id, replaced_by), b"", db=w.dbs.expiry)


def delete(w: WriteContext, context_id: int, replaced_by: int) -> int:
    """Remove an entry and its index key; the head it named (0 when there was none)."""
    key = _KEY.pack(context_id, replaced_by)
    value = w.txn.get(key, db=w.dbs.heads)
    if value is None:
        return 0
    head, _, at = _VALUE.unpack(value)
    w.txn.delete(key, db=w.dbs.heads)
    w.txn.delete(history_key(at, context_id, replaced_by), db=w.dbs.expiry)
    return int(head)


def replaced_by(txn: Any, dbs: Any, context_id: int, turn_id: int) -> int | None:
    """The head that ``turn_id`` replaced in the context, if it replaced one."""
    value = txn.get(_KEY.pack(context_id, turn_id), db=dbs.heads)
    return _VALUE.unpack(value)[0] if value is not None else None


def list_entries(txn: Any, dbs: Any, context_id: int, limit: int,
                 before: int | None) -> tuple[list[HeadEntry], int | None]:
    """Newest first, those replaced by a turn below ``before``; O(limit)."""
    cursor = txn.cursor(db=dbs.heads)
    found: list[HeadEntry] = []
    start = _KEY.pack(context_id, before if before is not None else (1 << 64) - 1)
    # The first key at or after the start, then backwards: entries of this context below it.
    if cursor.set_range(start):
        moved = cursor.prev()
    else:
        moved = cursor.last()
    while moved and len(found) <= limit:
        key = cursor.key()
        owner, replaced_by = _KEY.unpack(key)
        if owner != context_id:
            break
        if before is None or replaced_by < before:
            head, depth, at = _VALUE.unpack(cursor.value())
            found.append(HeadEntry(head, depth, replaced_by, at))
        moved = cursor.prev()
    more = len(found) > limit
    found = found[:limit]
    return found, found[-1].replaced_by_turn_id if more and found else None


def heads_of(txn: Any, dbs: Any, context_id: int) -> Iterator[tuple[int, int]]:
    """(head_turn_id, head_depth) of each of the context's replaced heads, oldest first."""
    for _, head, depth in entries_of(txn, dbs, context_id):
        yield head, depth


def entries_of(txn: Any, dbs: Any, context_id: int) -> Iterator[tuple[int, int, int]]:
    """(replaced_by_turn_id, head_turn_id, head_depth) of each of the context's entries, oldest first."""
    cursor = txn.cursor(db=dbs.heads)
    prefix = _KEY.pack(context_id, 0)[:8]
    if not cursor.set_range(prefix):
        return
    for key, value in cursor:
        if not bytes(key).startswith(prefix):
            return
        head, depth, _ = _VALUE.unpack(value)
        yield _KEY.unpack(key)[1], head, depth


def decode_key(key: bytes) -> tuple[int, int]:
    """(context_id, replaced_by_turn_id)."""
    return _KEY.unpack(key)


def decode_value(value: bytes) -> tuple[int, int, int]:
    """(head_turn_id, head_depth, replaced_at_ms)."""
    return _VALUE.unpack(value)
