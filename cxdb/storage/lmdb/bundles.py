"""Registry bundles, stored as published.

Sub-database ``bundles``: key = bundle_id UTF-8; value::

    offset  size  field
    0       8     published_at_ms  u64 BE
    8       8     sequence         u64 BE, 1 for the first bundle published
    16      ...   the bundle as canonical JSON (sorted keys)

Sub-database ``bundleseq``: key = sequence u64 BE; value = bundle_id UTF-8.
Walking it gives the bundles in publish order; the counter ``bundles`` is the
latest sequence and so the registry's generation.
"""

from __future__ import annotations

import struct
from typing import Any

from ...errors import Corrupt
from ..base import StoredBundle
from .writer import WriteContext

__all__ = ["StoredBundle", "all_in_order", "get", "put"]

_HEAD = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")


def _decode(bundle_id: str, value: bytes) -> StoredBundle:
    try:
        published, sequence = _HEAD.unpack_from(value)
    except struct.error as exc:
        raise Corrupt("bundle record does not decode", {"bundle_id": bundle_id}) from exc
    return StoredBundle(bundle_id, sequence, published, bytes(value[_HEAD.size:]))


def get(txn: Any, dbs: Any, bundle_id: str) -> StoredBundle | None:
    value = txn.get(bundle_id.encode(), db=dbs.bundles)
    return _decode(bundle_id, value) if value is not None else None


def put(w: WriteContext, bundle_id: str, body: bytes, at_ms: int | None = None) -> StoredBundle:
    """Publish a bundle (at ``at_ms``, by default now)."""
    sequence = w.counters.add("bundles")
    at = w.now_ms if at_ms is None else at_ms
    w.txn.put(bundle_id.encode(), _HEAD.pack(at, sequence) + body, db=w.dbs.bundles)
    w.txn.put(_U64.pack(sequence), bundle_id.encode(), db=w.dbs.bundleseq)
    return StoredBundle(bundle_id, sequence, at, body)


def all_in_order(txn: Any, dbs: Any, after: int = 0) -> list[StoredBundle]:
    """Every bundle published after sequence ``after``, in publish order."""
    found: list[StoredBundle] = []
    cursor = txn.cursor(db=dbs.bundleseq)
    if not cursor.set_range(_U64.pack(after + 1)):
        return found
    for _, raw_id in cursor:
        bundle_id = bytes(raw_id).decode()
        stored = get(txn, dbs, bundle_id)
        if stored is None:
            raise Corrupt("publish order names a missing bundle", {"bundle_id": bundle_id})
        found.append(stored)
    return found

