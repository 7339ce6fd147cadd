"""Deleting contexts, expiring history and keys, and reclaiming what nothing reaches any more.

A deletion commits at once and does O(contexts deleted) work: the records and index entries of each
context go, its head loses the reference the context held (:mod:`.refs`), and a tomb (``garbage`` key
``b"c"`` + id) remembers its head history and idempotency keys. :func:`reclaim` then does the rest in
steps of bounded work, each one write transaction, so appends between steps keep their latency:

1. purge tombs: each history entry removed drops a reference on its head;
2. mark queued turns (count 0): the parent and the blob each lose a reference, so a chain is followed
   one turn per unit of work, and only as far as nothing else holds it;
3. delete marked turns, then blobs no turn names.

Every step's writes commit together with the queue entries they consume, so a kill -9 at any point
leaves a queue that the next step resumes from.
"""

from __future__ import annotations

import struct
from itertools import islice
from typing import Any

from ...codec import BlobCodec
from ..base import Pending, Reclaimed
from ..rules import MAX_DELETE, missing_context, too_many_to_delete
from . import contexts, events, heads, idempotency, refs, turns
from .counters import read_all
from .expiry import history_key, key_key, split
from .writer import WriteContext

__all__ = ["build", "delete", "expire", "pending", "reclaim"]

_U64 = struct.Struct(">Q")


def delete(w: WriteContext, context_id: int, recursive: bool) -> list[int]:
    record = contexts.get(w.txn, w.dbs, context_id)
    if record is None:
        raise missing_context(context_id)
    doomed = [record]
    frontier = [context_id]
    while recursive and frontier:
        level = [child for parent in frontier for child in contexts.child_ids(w.txn, w.dbs, parent, MAX_DELETE + 1)]
        if len(doomed) + len(level) > MAX_DELETE:
            raise too_many_to_delete(context_id, len(doomed) + len(level), MAX_DELETE)
        doomed.extend(contexts.require(w.txn, w.dbs, child) for child in level)
        frontier = level
    for found in doomed:
        contexts.remove(w, found)
        refs.add_turn(w, found.head_turn_id, -1)
        w.txn.put(b"c" + _U64.pack(found.context_id), b"", db=w.dbs.garbage)
        w.counters.add("gc_contexts")
        events.record(w, "context_deleted", found.context_id, found.head_turn_id, found.head_depth)
    return [found.context_id for found in doomed]


def _first(w: WriteContext, kind: bytes) -> bytes | None:
    cursor = w.txn.cursor(db=w.dbs.garbage)
    if cursor.set_range(kind) and bytes(cursor.key()[:1]) == kind:
        return bytes(cursor.key())
    return None


def _purge(w: WriteContext, context_id: int, budget: int) -> tuple[bool, int]:
    """Remove up to ``budget`` of a deleted context's history entries and keys; (all gone, work done)."""
    work = 0
    for replaced_by, _, _ in list(islice(heads.entries_of(w.txn, w.dbs, context_id), budget)):
        refs.add_turn(w, heads.delete(w, context_id, replaced_by), -1)
        work += 1
    prefix = _U64.pack(context_id)
    cursor = w.txn.cursor(db=w.dbs.idem)
    while work < budget and cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
        idempotency.delete(w, bytes(cursor.key()))
        work += 1
    return work < budget, work


def reclaim(w: WriteContext, budget: int) -> Reclaimed:
    work = purged = freed_turns = freed_blobs = freed_bytes = 0
    while work < budget and (tomb := _first(w, b"c")) is not None:
        done, spent = _purge(w, _U64.unpack_from(tomb, 1)[0], budget - work)
        work += spent + 1
        if not done:
            break
        w.txn.delete(tomb, db=w.dbs.garbage)
        w.counters.add("gc_contexts", -1)
        purged += 1
    while work < budget and (queued := _first(w, b"q")) is not None:
        work += 1
        w.txn.delete(queued, db=w.dbs.garbage)
        w.counters.add("gc_queued", -1)
        turn_id = _U64.unpack_from(queued, 1)[0]
        found = turns.get(w.txn, w.dbs.turns, turn_id)
        if found is None or refs.turn_count(w.txn, w.dbs, turn_id):
            continue  # gone already, or held again (a restore)
        w.txn.put(b"t" + queued[1:], b"", db=w.dbs.garbage)
        w.counters.add("gc_turns")
        refs.add_turn(w, found[0].parent_turn_id, -1)
        refs.add_blob(w, found[0].content_hash, -1)
    while work < budget and (marked := _first(w, b"t")) is not None:
        work += 1
        w.txn.delete(marked, db=w.dbs.garbage)
        w.txn.delete(marked[1:], db=w.dbs.turns)
        refs.forget_turn(w, _U64.unpack_from(marked, 1)[0])
        w.counters.add("gc_turns", -1)
        w.counters.add("turns", -1)
        freed_turns += 1
    while work < budget and (unnamed := _first(w, b"b")) is not None:
        work += 1
        w.txn.delete(unnamed, db=w.dbs.garbage)
        digest = unnamed[1:]
        stored = w.txn.get(digest, db=w.dbs.blobs)
        if stored is None or refs.blob_count(w.txn, w.dbs, digest):
            continue
        w.txn.delete(digest, db=w.dbs.blobs)
        refs.forget_blob(w, digest)
        w.counters.add("gc_blobs", -1)
        w.counters.add("gc_bytes", -len(stored))
        w.counters.add("blobs", -1)
        w.counters.add("blob_stored", -len(stored))
        w.counters.add("blob_raw", -BlobCodec.header(stored)[1])
        freed_blobs += 1
        freed_bytes += len(stored)
    more = any(_first(w, kind) is not None for kind in (b"c", b"q", b"t", b"b"))
    return Reclaimed(purged, freed_turns, freed_blobs, freed_bytes, more)


def expire(w: WriteContext, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
    cursor = w.txn.cursor(db=w.dbs.expiry)
    expired = [0, 0]
    for slot, (kind, before) in enumerate(((b"h", history_before_ms), (b"k", keys_before_ms))):
        while expired[slot] < budget and cursor.set_range(kind):
            key = bytes(cursor.key())
            at_ms, context_id, rest = split(key)
            if key[:1] != kind or at_ms >= before:
                break
            if kind == b"h":
                removed = heads.delete(w, context_id, _U64.unpack(rest)[0])
                refs.add_turn(w, removed, -1)
            else:
                idempotency.delete(w, _U64.pack(context_id) + rest)
            w.txn.delete(key, db=w.dbs.expiry)  # gone with its entry; an orphan goes too
            expired[slot] += 1
    return expired[0], expired[1]


def pending(txn: Any, meta: Any) -> Pending:
    values = read_all(txn, meta)
    return Pending(values["gc_contexts"], values["gc_queued"] + values["gc_turns"], values["gc_blobs"],
                   values["gc_bytes"])


def _bump(txn: Any, db: Any, key: bytes) -> None:
    value = txn.get(key, db=db)
    txn.put(key, _U64.pack((_U64.unpack(value)[0] if value is not None else 0) + 1), db=db)


def _settle(txn: Any, records: Any, counts: Any) -> None:
    """From raw counts (no key: 0) to the stored form (no key: 1; 0 written)."""
    for key in records.iternext(keys=True, values=False):
        value = txn.get(key, db=counts)
        if value is None:
            txn.put(key, _U64.pack(0), db=counts)
        elif _U64.unpack(value)[0] == 1:
            txn.delete(key, db=counts)


def build(txn: Any, dbs: Any) -> None:
    """Count every reference and index history and keys by age, for a store of format 4 or older
    (from scratch: whatever those sub-databases held is dropped first). Turns nothing holds are left
    for a deletion or a restore to settle, not queued: an older store may hold turns of an import that
    stopped before their context."""
    for db in (dbs.refs, dbs.blobrefs, dbs.expiry, dbs.garbage):
        txn.drop(db, delete=False)
    for key, value in txn.cursor(db=dbs.turns):
        record, _ = turns.decode(_U64.unpack(key)[0], value)
        if record.parent_turn_id:
            _bump(txn, dbs.refs, _U64.pack(record.parent_turn_id))
        _bump(txn, dbs.blobrefs, record.content_hash)
    for _, value in txn.cursor(db=dbs.contexts):
        head = _U64.unpack_from(value)[0]
        if head:
            _bump(txn, dbs.refs, _U64.pack(head))
    for key, value in txn.cursor(db=dbs.heads):
        context_id, replaced_by = heads.decode_key(key)
        head, _, at_ms = heads.decode_value(value)
        _bump(txn, dbs.refs, _U64.pack(head))
        txn.put(history_key(at_ms, context_id, replaced_by), b"", db=dbs.expiry)
    for key, value in txn.cursor(db=dbs.idem):
        raw = bytes(key)
        txn.put(key_key(_U64.unpack_from(value, 8)[0], _U64.unpack_from(raw)[0], raw[8:]), b"", db=dbs.expiry)
    _settle(txn, txn.cursor(db=dbs.turns), dbs.refs)
    _settle(txn, txn.cursor(db=dbs.blobs), dbs.blobrefs)
