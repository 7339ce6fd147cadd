"""Reference counts and the reclamation queue: what tells garbage from what someone still reaches.

Sub-database ``refs``: key = turn_id u64 BE; value = u64 BE, how many things hold the turn: its
children, the contexts whose head it is, and the head-history entries naming it. Almost every turn
is held by exactly one thing (its child, or the head), so a count of 1 is not stored: **a stored turn
with no key holds 1**. A plain append then writes no count at all (the new turn holds 1; its parent
trades the head's reference for the child's). A count of 0 is stored: nothing reaches the turn, and
it is garbage (or a restored turn whose context is still to come).

Sub-database ``blobrefs``: key = content hash; value = u64 BE, how many stored turns name the blob;
again no key means 1.

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

__all__ = ["add_blob", "add_turn", "blob_count", "forget_blob", "forget_turn", "set_turn", "turn_count"]

_U64 = struct.Struct(">Q")


def _count(txn: Any, db: Any, key: bytes) -> int:
    value = txn.get(key, db=db)
    return _U64.unpack(value)[0] if value is not None else 1


def _store(txn: Any, db: Any, key: bytes, count: int) -> None:
    if count == 1:
        txn.delete(key, db=db)
    else:
        txn.put(key, _U64.pack(count), db=db)


def turn_count(txn: Any, dbs: Any, turn_id: int) -> int:
    """The count of a stored turn (of one that is not stored, meaningless)."""
    return _count(txn, dbs.refs, _U64.pack(turn_id))


def blob_count(txn: Any, dbs: Any, digest: bytes) -> int:
    """The count of a stored blob (of one that is not stored, meaningless)."""
    return _count(txn, dbs.blobrefs, digest)


def set_turn(w: WriteContext, turn_id: int, count: int) -> None:
    """The count of a turn just written (nothing held it before): no write for the usual 1."""
    if count != 1:
        w.txn.put(_U64.pack(turn_id), _U64.pack(count), db=w.dbs.refs)


def forget_turn(w: WriteContext, turn_id: int) -> None:
    """A turn deleted: its count goes with it."""
    w.txn.delete(_U64.pack(turn_id), db=w.dbs.refs)


def forget_blob(w: WriteContext, digest: bytes) -> None:
    w.txn.delete(digest, db=w.dbs.blobrefs)


def add_turn(w: WriteContext, turn_id: int, delta: int) -> None:
    """Add ``delta`` to a stored turn's count (turn 0, none, is skipped); at 0 the turn is queued for
    reclamation. A turn marked for deletion cannot be held again (Conflict): appends refuse such
    parents before this."""
    if not turn_id or not delta:
        return
    key = _U64.pack(turn_id)
    before = _count(w.txn, w.dbs.refs, key)
    count = max(0, before + delta)  # a count already wrong (check reports it) never goes below nothing
    if not before and count and w.txn.get(b"t" + key, db=w.dbs.garbage) is not None:
        raise being_reclaimed(turn_id)
    _store(w.txn, w.dbs.refs, key, count)
    if not count and before and w.txn.put(b"q" + key, b"", db=w.dbs.garbage, overwrite=False):
        w.counters.add("gc_queued")


def add_blob(w: WriteContext, digest: bytes, delta: int, stored_size: int | None = None) -> None:
    """Add ``delta`` to a stored blob's count. At 0 it awaits deletion; a blob awaiting deletion that
    gains a reference is taken back (the dedup race: an append of the same payload keeps it whole).
    ``stored_size`` is the blob's stored length, read when not given and needed."""
    before = _count(w.txn, w.dbs.blobrefs, digest)
    count = max(0, before + delta)
    if stored_size is None and bool(count) != bool(before):
        stored = w.txn.get(digest, db=w.dbs.blobs)
        stored_size = len(stored) if stored is not None else 0
    _store(w.txn, w.dbs.blobrefs, digest, count)
    if count and not before and w.txn.delete(b"b" + digest, db=w.dbs.garbage):
        w.counters.add("gc_blobs", -1)
        w.counters.add("gc_bytes", -(stored_size or 0))
    elif before and not count:
        w.txn.put(b"b" + digest, b"", db=w.dbs.garbage)
        w.counters.add("gc_blobs")
        w.counters.add("gc_bytes", stored_size or 0)
