"""Counters kept in the ``meta`` sub-database.

Layout: key ``b"c:" + name`` (ASCII) -> u64 big-endian value.

The writer loads them once per batch, each operation works on a private copy
that is merged only if the operation succeeds, and the batch writes them back
in the same transaction that commits the batch. Reading any counter is O(1).
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["NAMES", "Counters", "read_all", "read_one"]

NAMES = (
    "next_turn", "next_context", "turns", "contexts", "blobs", "blob_stored", "blob_raw",
    "dedup_hits", "dedup_misses", "bundles", "dicts", "dict_current", "next_event",
    "gc_contexts", "gc_queued", "gc_turns", "gc_blobs", "gc_bytes",
)
_U64 = struct.Struct(">Q")


def _key(name: str) -> bytes:
    return b"c:" + name.encode()


def read_one(txn: Any, meta_db: Any, name: str) -> int:
    """One counter's committed value (0 when never written)."""
    raw = txn.get(_key(name), db=meta_db)
    return int(_U64.unpack(raw)[0]) if raw is not None else 0


def read_all(txn: Any, meta_db: Any) -> dict[str, int]:
    """Every counter's committed value (0 when never written)."""
    return {name: read_one(txn, meta_db, name) for name in NAMES}


class Counters:
    """A batch's counters, with per-operation copies that merge on success."""

    __slots__ = ("_values", "_base")

    def __init__(self, values: dict[str, int]) -> None:
        self._values = dict(values)
        self._base = dict(values)

    @classmethod
    def load(cls, txn: Any, meta_db: Any) -> Counters:
        return cls(read_all(txn, meta_db))

    def fork(self) -> Counters:
        child = Counters.__new__(Counters)
        child._values = dict(self._values)
        child._base = self._base
        return child

    def absorb(self, child: Counters) -> None:
        self._values = child._values

    def get(self, name: str) -> int:
        return self._values[name]

    def add(self, name: str, amount: int = 1) -> int:
        value = self._values[name] + amount
        self._values[name] = value
        return value

    def save(self, txn: Any, meta_db: Any) -> None:
        for name, value in self._values.items():
            if value != self._base.get(name):
                txn.put(_key(name), _U64.pack(value), db=meta_db)
