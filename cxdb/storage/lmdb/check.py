"""Integrity check of a whole store.

Verifies that every blob hashes to its key, every turn's parent exists with
depth one less and its blob exists, every context's head exists with the
recorded depth, each context's tag and activity entries are in the indexes, every
head-history entry names a context (or one deleted, awaiting reclamation) and a turn of the
recorded depth, every reference count (:mod:`.refs`) is what the records add up to, and the counters,
the reclamation counters and the per-tag and per-parent totals agree with what is stored. It collects
problems into a report instead of raising on the first one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...codec import content_hash
from ...errors import CxdbError
from ..report import Report
from . import contexts, heads, refs, turns
from .counters import read_all
from .env import Dbs

__all__ = ["check_store"]


def _keys(txn: Any, db: Any) -> list[bytes]:
    return [bytes(key) for key in txn.cursor(db=db).iternext(keys=True, values=False)]


def check_store(txn: Any, dbs: Dbs, decode: Callable[[bytes], bytes]) -> dict[str, Any]:
    """A report: ``ok``, ``problems`` (at most 100 listed), ``problem_count`` and ``counts``."""
    report = Report()
    problem = report.problem
    blob_count = 0
    for digest, stored in txn.cursor(db=dbs.blobs):
        blob_count += 1
        try:
            raw = decode(stored)
        except CxdbError as exc:
            problem("blob_undecodable", content_hash=bytes(digest).hex(), reason=exc.message)
            continue
        if content_hash(raw) != bytes(digest):
            problem("blob_hash_mismatch", content_hash=bytes(digest).hex())

    garbage: dict[bytes, int] = {b"c": 0, b"q": 0, b"t": 0, b"b": 0}
    marked: set[int] = set()
    unnamed_bytes = 0
    for key in txn.cursor(db=dbs.garbage).iternext(keys=True, values=False):
        letter = bytes(key[:1])
        garbage[letter] = garbage.get(letter, 0) + 1
        if letter == b"t":
            marked.add(int.from_bytes(key[1:], "big"))
        elif letter == b"b":
            stored = txn.get(bytes(key[1:]), db=dbs.blobs)
            unnamed_bytes += len(stored) if stored is not None else 0
    expected_refs: dict[int, int] = {}
    expected_blob_refs: dict[bytes, int] = {}

    turn_count = 0
    for key, value in txn.cursor(db=dbs.turns):
        turn_count += 1
        turn_id = int.from_bytes(key, "big")
        try:
            record, _ = turns.decode(turn_id, value)
        except CxdbError:
            problem("turn_undecodable", turn_id=str(turn_id))
            continue
        if turn_id in marked:  # to delete: its parent and blob no longer count it, and may be gone first
            continue
        expected_refs[record.parent_turn_id] = expected_refs.get(record.parent_turn_id, 0) + 1
        expected_blob_refs[record.content_hash] = expected_blob_refs.get(record.content_hash, 0) + 1
        if record.parent_turn_id:
            parent = turns.get(txn, dbs.turns, record.parent_turn_id)
            if parent is None:
                problem("turn_parent_missing", turn_id=str(turn_id), parent_turn_id=str(record.parent_turn_id))
            elif parent[0].depth != record.depth - 1:
                problem("turn_depth_wrong", turn_id=str(turn_id), depth=record.depth)
        elif record.depth != 1:
            problem("turn_depth_wrong", turn_id=str(turn_id), depth=record.depth)
        if txn.get(record.content_hash, db=dbs.blobs) is None:
            problem("turn_blob_missing", turn_id=str(turn_id), content_hash=record.content_hash.hex())

    context_count = 0
    expected_counts: dict[bytes, int] = {}
    for key, _ in txn.cursor(db=dbs.contexts):
        context_count += 1
        context_id = int.from_bytes(key, "big")
        try:
            context = contexts.require(txn, dbs, context_id)
        except CxdbError:
            problem("context_undecodable", context_id=str(context_id))
            continue
        if context.head_turn_id:
            expected_refs[context.head_turn_id] = expected_refs.get(context.head_turn_id, 0) + 1
            head = turns.get(txn, dbs.turns, context.head_turn_id)
            if head is None:
                problem("head_missing", context_id=str(context_id), head_turn_id=str(context.head_turn_id))
            elif head[0].depth != context.head_depth:
                problem("head_depth_wrong", context_id=str(context_id))
        elif context.head_depth != 0:
            problem("head_depth_wrong", context_id=str(context_id))
        for kind in contexts.index_problems(txn, dbs, context):
            problem(kind, context_id=str(context_id))
        if context.client_tag is not None:
            tag_key = contexts.count_key(tag=context.client_tag)
            expected_counts[tag_key] = expected_counts.get(tag_key, 0) + 1
        if context.lineage.parent_context_id is not None:
            parent_key = contexts.count_key(parent=context.lineage.parent_context_id)
            expected_counts[parent_key] = expected_counts.get(parent_key, 0) + 1
    stored_counts = contexts.counts(txn, dbs)
    for count_key in sorted(set(expected_counts) | set(stored_counts)):
        recorded, actual = stored_counts.get(count_key, 0), expected_counts.get(count_key, 0)
        if recorded != actual:
            problem("index_count_wrong", key=count_key.hex(), recorded=recorded, actual=actual)

    for key, value in txn.cursor(db=dbs.heads):
        context_id, replaced_by = heads.decode_key(key)
        head_turn_id, head_depth, _ = heads.decode_value(value)
        expected_refs[head_turn_id] = expected_refs.get(head_turn_id, 0) + 1
        head = turns.get(txn, dbs.turns, head_turn_id)
        owner = contexts.get(txn, dbs, context_id, False) is not None or txn.get(
            b"c" + context_id.to_bytes(8, "big"), db=dbs.garbage) is not None
        if not owner or head is None or head[0].depth != head_depth:
            problem("head_history_wrong", context_id=str(context_id), replaced_by_turn_id=str(replaced_by))

    expected_refs.pop(0, None)
    for key in txn.cursor(db=dbs.turns).iternext(keys=True, values=False):
        turn_id = int.from_bytes(key, "big")
        recorded, actual = refs.turn_count(txn, dbs, turn_id), expected_refs.get(turn_id, 0)
        if recorded != actual:
            problem("turn_refs_wrong", turn_id=str(turn_id), recorded=recorded, actual=actual)
        if actual and turn_id in marked:
            problem("reachable_turn_marked", turn_id=str(turn_id))
    for key in txn.cursor(db=dbs.blobs).iternext(keys=True, values=False):
        digest = bytes(key)
        recorded, actual = refs.blob_count(txn, dbs, digest), expected_blob_refs.get(digest, 0)
        if recorded != actual:
            problem("blob_refs_wrong", content_hash=digest.hex(), recorded=recorded, actual=actual)
    for counts, records, name in ((dbs.refs, dbs.turns, "turn"), (dbs.blobrefs, dbs.blobs, "blob")):
        for key in _keys(txn, counts):
            if txn.get(key, db=records) is None:
                problem("refs_orphan", of=name, key=key.hex())

    counters = read_all(txn, dbs.meta)
    for name, actual in (("blobs", blob_count), ("turns", turn_count), ("contexts", context_count),
                         ("gc_contexts", garbage[b"c"]), ("gc_queued", garbage[b"q"]), ("gc_turns", garbage[b"t"]),
                         ("gc_blobs", garbage[b"b"]), ("gc_bytes", unnamed_bytes)):
        if counters[name] != actual:
            problem("counter_wrong", counter=name, recorded=counters[name], actual=actual)
    return report.result({"blobs": blob_count, "turns": turn_count, "contexts": context_count})
