"""Reference counts and the reclamation queue: what tells garbage from what someone still reaches.

Sub-database ``refs``: key = turn_id u64 BE; value = u64 BE, how many things hold the turn: its
children, the contexts whose head it is, and the head-history entries naming it. A turn with no key
holds 0: nothing reaches it, and it is garbage (or a restored turn whose context is still to come).

Sub-database ``blobrefs``: key = content hash; value = u64 BE, how many stored turns name the blob.

Sub-database ``garbage``, what reclamation (:mod:`.lifecycle`) has still to do, each key with an empty
value:

- ``b"c"`` + context_id: a deleted context whose head history and idempotency keys remain to purge;
- ``b"q"`` + turn_id: a turn whose count fell to 0, to mark: its parent and blob lose a reference;
- ``b"t"`` + turn_id: a marked turn, to delete;
- ``b"b"`` + hash: a blob no turn names, to delete (an append storing the same payload first takes it
  back: :func:`add_blob`).

Counters ``gc_contexts``, ``gc_queued``, ``gc_turns``, ``gc_blobs`` and ``gc_bytes`` (the stored bytes
of the blobs to delete) count them, so what awaits reclamation is O(1) to report.
"""

from __future__ import annotations

import struct
from typing import Any

from ..rules import being_reclaimed
from .writer import WriteContext

__all__ = ["add_blob", "add_turn", "blob_count", "turn_count", "set_turn"]

_U64 = struct.Struct(">Q")


def turn_count(txn: Any, dbs: Any, turn_id: int) -> int:
    value = txn.get(_U64.pack(turn_id), db=dbs.refs)
    return _U64.unpack(value)[0] if value is not None else 0


def blob_count(txn: Any, dbs: Any, digest: bytes) -> int:
    value = txn.get(digest, db=dbs.blobrefs)
    return _U64.unpack(value)[0] if value is not None else 0


def set_turn(w: WriteContext, turn_id: int, count: int) -> None:
    """The count of a turn just written (nothing held it before)."""
    w.txn.put(_U64.pack(turn_id), _U64.pack(count), db=w.dbs.refs)


def add_turn(w: WriteContext, turn_id: int, delta: int) -> int:
    """Add ``delta`` to a turn's count; at 0 the turn is queued for reclamation. The new count. A turn
    marked for deletion cannot be held again (Conflict): appends refuse such parents before this."""
    if not turn_id or not delta:
        return turn_count(w.txn, w.dbs, turn_id)
    key = _U64.pack(turn_id)
    value = w.txn.get(key, db=w.dbs.refs)
    before = _U64.unpack(value)[0] if value is not None else 0
    count = before + delta
    if not before and count > 0 and w.txn.get(b"t" + key, db=w.dbs.garbage) is not None:
        raise being_reclaimed(turn_id)
    if count < 0:
        count = 0  # a count already wrong (check reports it) never goes below nothing
    if count:
        w.txn.put(key, _U64.pack(count), db=w.dbs.refs)
    else:
        w.txn.delete(key, db=w.dbs.refs)
        if w.txn.put(b"q" + key, b"", db=w.dbs.garbage, overwrite=False):
            w.counters.add("gc_queued")
    return count


def add_blob(w: WriteContext, digest: bytes, delta: int, stored_size: int | None = None) -> None:
    """Add ``delta`` to a blob's count. At 0 it awaits deletion; a blob awaiting deletion that gains
    a reference is taken back (the dedup race: an append of the same payload keeps it whole).
    ``stored_size`` is the blob's stored length, read when not given and needed."""
    value = w.txn.get(digest, db=w.dbs.blobrefs)
    before = _U64.unpack(value)[0] if value is not None else 0
    count = max(0, before + delta)
    if stored_size is None and bool(count) != bool(before):
        stored = w.txn.get(digest, db=w.dbs.blobs)
        stored_size = len(stored) if stored is not None else 0
    if count:
        w.txn.put(digest, _U64.pack(count), db=w.dbs.blobrefs)
        if not before and w.txn.delete(b"b" + digest, db=w.dbs.garbage):
            w.counters.add("gc_blobs", -1)
            w.counters.add("gc_bytes", -(stored_size or 0))
    elif before:
        w.txn.delete(digest, db=w.dbs.blobrefs)
        w.txn.put(b"b" + digest, b"", db=w.dbs.garbage)
        w.counters.add("gc_blobs")
        w.counters.add("gc_bytes", stored_size or 0)
