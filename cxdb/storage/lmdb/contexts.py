"""Context records: head pointers, metadata and the indexes over them.

Sub-database ``contexts``: key = context_id as u64 BE; value (56 bytes)::

    offset  size  field
    0       8     head_turn_id        u64 BE (0: empty)
    8       8     head_depth          u64 BE
    16      8     created_at_ms       u64 BE
    24      8     last_activity_ms    u64 BE
    32      8     parent_context_id   u64 BE (0: none)
    40      8     root_context_id     u64 BE
    48      8     fork_turn_id        u64 BE (0: none)

Sub-database ``ctxmeta``: key = context_id u64 BE; value = JSON
``{"tag": str | null, "provenance": object | null}``. Written once at creation,
so moving a head rewrites only the 56-byte record.

Sub-database ``activity``: key = last_activity_ms u64 BE + context_id u64 BE;
empty value. Walked backwards for newest-activity-first listing.

Sub-database ``tags``: key = u16 BE tag length + tag UTF-8 + context_id u64 BE;
empty value.

Sub-database ``children``: key = parent context_id u64 BE + child context_id
u64 BE; empty value.

Sub-database ``tagact``: key = u16 BE tag length + tag UTF-8 + last_activity_ms
u64 BE + context_id u64 BE; empty value. Walked backwards within a tag's prefix,
it lists that tag's contexts newest activity first, in O(limit).

Sub-database ``ctxtag``: key = context_id u64 BE; value = the tag's UTF-8, for
tagged contexts only: what :func:`move_head` needs to move a ``tagact`` entry.

Sub-database ``counts``: key = ``b"t"`` + u16 BE tag length + tag UTF-8, value =
how many contexts have that tag; key = ``b"c"`` + context_id u64 BE, value = how
many children it has. Both u64 BE: totals without a walk.

A head moves only by :func:`move_head`, a compare-and-set on the stored head.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator
from typing import Any

import orjson

from ...errors import Conflict, Corrupt
from ...model import ContextId, ContextRecord, Lineage, TurnId
from ..rules import MAX_TAG_BYTES, missing_context
from .writer import WriteContext

__all__ = [
    "build_indexes",
    "child_count",
    "child_ids",
    "create",
    "get",
    "ids_after",
    "ids_by_activity",
    "head",
    "ids_by_prefix",
    "ids_by_tag",
    "insert",
    "move_head",
    "remove",
    "tag_count",
]

_REC = struct.Struct(">QQQQQQQ")
_HEAD = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_ACTIVITY_ID = struct.Struct(">QQ")


def _key(context_id: int) -> bytes:
    return _U64.pack(context_id)


def _tag_prefix(tag: str) -> bytes:
    raw = tag.encode()
    return _U16.pack(len(raw)) + raw


def _record(context_id: int, head: tuple[int, ...], meta: bytes | None) -> ContextRecord:
    head_id, depth, created, activity, parent, root, fork = head
    extra = orjson.loads(meta) if meta else {}
    lineage = Lineage(ContextId(parent) if parent else None, ContextId(root), TurnId(fork) if fork else None)
    return ContextRecord(ContextId(context_id), TurnId(head_id), depth, created, activity,
                         extra.get("tag"), extra.get("provenance"), lineage)


def get(txn: Any, dbs: Any, context_id: int, with_meta: bool = True) -> ContextRecord | None:
    """The context, or None. ``with_meta=False`` skips tag and provenance."""
    value = txn.get(_key(context_id), db=dbs.contexts)
    if value is None:
        return None
    try:
        head = _REC.unpack(value)
    except struct.error as exc:
        raise Corrupt("context record does not decode", {"context_id": str(context_id)}) from exc
    meta = txn.get(_key(context_id), db=dbs.ctxmeta) if with_meta else None
    return _record(context_id, head, meta)


def require(txn: Any, dbs: Any, context_id: int, with_meta: bool = True) -> ContextRecord:
    found = get(txn, dbs, context_id, with_meta)
    if found is None:
        raise missing_context(context_id)
    return found


def head(txn: Any, dbs: Any, context_id: int) -> tuple[int, int]:
    """(head_turn_id, head_depth) of a context; NotFound if it does not exist."""
    value = txn.get(_key(context_id), db=dbs.contexts)
    if value is None:
        raise missing_context(context_id)
    return _HEAD.unpack_from(value)


def create(w: WriteContext, head_turn_id: int, head_depth: int, parent: int, root: int | None,
           fork_turn_id: int, tag: str | None, provenance: dict[str, Any] | None) -> ContextRecord:
    """Allocate an id and write a new context; ``root=None`` makes it its own root."""
    context_id = w.counters.add("next_context")
    root_id = context_id if root is None else root
    return _write(w, context_id, (head_turn_id, head_depth, w.now_ms, w.now_ms, parent, root_id, fork_turn_id),
                  tag, provenance)


def insert(w: WriteContext, record: ContextRecord) -> None:
    """Write a context with its own id, head and times (restored from an export); the next id
    allocated stays above it."""
    lineage = record.lineage
    _write(w, record.context_id, (record.head_turn_id, record.head_depth, record.created_at_ms,
                                  record.last_activity_ms, lineage.parent_context_id or 0, lineage.root_context_id,
                                  lineage.fork_turn_id or 0), record.client_tag, record.provenance)
    if record.context_id > w.counters.get("next_context"):
        w.counters.add("next_context", record.context_id - w.counters.get("next_context"))


def _write(w: WriteContext, context_id: int, head: tuple[int, int, int, int, int, int, int], tag: str | None,
           provenance: dict[str, Any] | None) -> ContextRecord:
    w.counters.add("contexts")
    key = _key(context_id)
    w.txn.put(key, _REC.pack(*head), db=w.dbs.contexts)
    meta = orjson.dumps({"tag": tag, "provenance": provenance})
    w.txn.put(key, meta, db=w.dbs.ctxmeta)
    activity, parent = head[3], head[4]
    w.txn.put(_U64.pack(activity) + key, b"", db=w.dbs.activity)
    if tag is not None:
        _index_tag(w.txn, w.dbs, context_id, tag, activity)
    if parent:
        _index_child(w.txn, w.dbs, parent, context_id)
    return _record(context_id, head, meta)


def _index_tag(txn: Any, dbs: Any, context_id: int, tag: str, activity_ms: int) -> None:
    prefix = _tag_prefix(tag)
    key = _key(context_id)
    txn.put(prefix + key, b"", db=dbs.tags)
    txn.put(prefix + _U64.pack(activity_ms) + key, b"", db=dbs.tagact)
    txn.put(key, tag.encode(), db=dbs.ctxtag)
    _add(txn, dbs, b"t" + prefix, 1)


def _index_child(txn: Any, dbs: Any, parent: int, child: int) -> None:
    txn.put(_key(parent) + _key(child), b"", db=dbs.children)
    _add(txn, dbs, b"c" + _key(parent), 1)


def _add(txn: Any, dbs: Any, key: bytes, delta: int) -> None:
    value = txn.get(key, db=dbs.counts)
    total = (_U64.unpack(value)[0] if value is not None else 0) + delta
    if total > 0:
        txn.put(key, _U64.pack(total), db=dbs.counts)
    else:
        txn.delete(key, db=dbs.counts)


def remove(w: WriteContext, record: ContextRecord) -> None:
    """Delete a context's record and its entries in every index. Its children keep their lineage
    (and their entries under it in ``children``), as forks keep their history."""
    key = _key(record.context_id)
    w.counters.add("contexts", -1)
    w.txn.delete(key, db=w.dbs.contexts)
    w.txn.delete(key, db=w.dbs.ctxmeta)
    w.txn.delete(_U64.pack(record.last_activity_ms) + key, db=w.dbs.activity)
    if record.client_tag is not None:
        prefix = _tag_prefix(record.client_tag)
        w.txn.delete(prefix + key, db=w.dbs.tags)
        w.txn.delete(prefix + _U64.pack(record.last_activity_ms) + key, db=w.dbs.tagact)
        w.txn.delete(key, db=w.dbs.ctxtag)
        _add(w.txn, w.dbs, b"t" + prefix, -1)
    parent = record.lineage.parent_context_id
    if parent:
        w.txn.delete(_key(parent) + key, db=w.dbs.children)
        _add(w.txn, w.dbs, b"c" + _key(parent), -1)


def _count(txn: Any, dbs: Any, key: bytes) -> int:
    value = txn.get(key, db=dbs.counts)
    return _U64.unpack(value)[0] if value is not None else 0


def tag_count(txn: Any, dbs: Any, tag: str) -> int:
    """How many contexts have ``tag``; O(1)."""
    return _count(txn, dbs, b"t" + _tag_prefix(tag))


def index_problems(txn: Any, dbs: Any, context: ContextRecord) -> list[str]:
    """What is wrong with one context's entries in ``tagact`` and ``ctxtag`` (for ``check``)."""
    key = _key(context.context_id)
    stored = txn.get(key, db=dbs.ctxtag)
    if context.client_tag is None:
        return ["ctxtag_extra"] if stored is not None else []
    prefix = _tag_prefix(context.client_tag)
    problems = []
    if stored is None or bytes(stored) != prefix[2:]:
        problems.append("ctxtag_wrong")
    if txn.get(prefix + _U64.pack(context.last_activity_ms) + key, db=dbs.tagact) is None:
        problems.append("tagact_missing")
    return problems


def counts(txn: Any, dbs: Any) -> dict[bytes, int]:
    """Every stored total, by its ``counts`` key (for ``check``)."""
    return {bytes(key): _U64.unpack(value)[0] for key, value in txn.cursor(db=dbs.counts)}


def count_key(tag: str | None = None, parent: int | None = None) -> bytes:
    """The ``counts`` key of a tag's total or a parent's number of children."""
    return b"t" + _tag_prefix(tag) if tag is not None else b"c" + _key(parent or 0)


def child_count(txn: Any, dbs: Any, context_id: int) -> int:
    """How many children a context has; O(1)."""
    return _count(txn, dbs, b"c" + _key(context_id))


def build_indexes(txn: Any, dbs: Any) -> None:
    """Write ``tagact``, ``ctxtag`` and ``counts`` for a store of format 1, which had none of them."""
    for raw_key in txn.cursor(db=dbs.tags).iternext(keys=True, values=False):
        raw = bytes(raw_key)
        length = _U16.unpack_from(raw)[0]
        context_id = _U64.unpack_from(raw, 2 + length)[0]
        value = txn.get(_key(context_id), db=dbs.contexts)
        activity = _REC.unpack(value)[3] if value is not None else 0
        prefix = raw[:2 + length]
        txn.put(prefix + _U64.pack(activity) + _key(context_id), b"", db=dbs.tagact)
        txn.put(_key(context_id), raw[2:2 + length], db=dbs.ctxtag)
        _add(txn, dbs, b"t" + prefix, 1)
    for raw_key in txn.cursor(db=dbs.children).iternext(keys=True, values=False):
        _add(txn, dbs, b"c" + bytes(raw_key)[:8], 1)


def move_head(w: WriteContext, context_id: int, expected: int, new_head: int, new_depth: int) -> None:
    """Compare-and-set the head of a context from ``expected`` to ``new_head``."""
    key = _key(context_id)
    value = w.txn.get(key, db=w.dbs.contexts)
    if value is None:
        raise missing_context(context_id)
    head_id, _, created, activity, parent, root, fork = _REC.unpack(value)
    if head_id != expected:
        raise Conflict("the context head moved", {"context_id": str(context_id), "expected": str(expected),
                                                   "found": str(head_id)})
    w.txn.put(key, _REC.pack(new_head, new_depth, created, w.now_ms, parent, root, fork), db=w.dbs.contexts)
    if activity != w.now_ms:
        w.txn.delete(_U64.pack(activity) + key, db=w.dbs.activity)
        w.txn.put(_U64.pack(w.now_ms) + key, b"", db=w.dbs.activity)
        tag = w.txn.get(key, db=w.dbs.ctxtag)
        if tag is not None:
            prefix = _U16.pack(len(tag)) + bytes(tag)
            w.txn.delete(prefix + _U64.pack(activity) + key, db=w.dbs.tagact)
            w.txn.put(prefix + _U64.pack(w.now_ms) + key, b"", db=w.dbs.tagact)


def _seek_below(cursor: Any, key: bytes | None, end: bytes) -> bool:
    """Put ``cursor`` on the last key below ``key`` (or, without one, below ``end``); False if none."""
    target = key if key is not None else end
    return bool(cursor.prev() if cursor.set_range(target) else cursor.last())


def ids_by_activity(txn: Any, dbs: Any, before: tuple[int, int] | None = None) -> Iterator[int]:
    """Context ids, newest activity first; with ``before`` (activity, id), only those below it."""
    cursor = txn.cursor(db=dbs.activity)
    if before is None:
        if not cursor.last():
            return
    elif not _seek_below(cursor, _ACTIVITY_ID.pack(*before), b""):
        return
    while True:
        yield _U64.unpack_from(cursor.key(), 8)[0]
        if not cursor.prev():
            return


def ids_by_tag(txn: Any, dbs: Any, tag: str, limit: int, before: tuple[int, int] | None = None) -> list[int]:
    """Ids of up to ``limit`` contexts created with exactly ``tag``, newest activity first (below
    ``before``, when given); O(limit)."""
    prefix = _tag_prefix(tag)
    found: list[int] = []
    if limit <= 0:
        return found
    cursor = txn.cursor(db=dbs.tagact)
    # Without a cursor, the first key past the prefix: every key of this tag sorts below it.
    moved = _seek_below(cursor, prefix + _ACTIVITY_ID.pack(*before) if before is not None else None,
                        prefix + b"\xff" * 17)
    while moved:
        key = cursor.key()
        if not key.startswith(prefix):
            break
        found.append(_U64.unpack_from(key, len(prefix) + 8)[0])
        if len(found) >= limit:
            break
        moved = cursor.prev()
    return found


def ids_by_prefix(txn: Any, dbs: Any, prefix: str, limit: int,
                  before: tuple[int, int] | None = None) -> tuple[list[int], int]:
    """Ids of up to ``limit`` contexts whose tag starts with ``prefix``, newest activity first (below
    ``before``, when given), and how many there are in all. Reads every ``tagact`` entry under the
    prefix once (one range per tag length, as keys begin with it): O(contexts under the prefix), in
    O(limit) memory."""
    raw = prefix.encode()
    best: list[tuple[int, int]] = []
    total = 0
    cursor = txn.cursor(db=dbs.tagact)
    for length in range(len(raw), MAX_TAG_BYTES + 1):
        start = _U16.pack(length) + raw
        if not cursor.set_range(start):
            break
        for key in cursor.iternext(keys=True, values=False):
            if not key.startswith(start):
                break
            total += 1
            entry = _ACTIVITY_ID.unpack_from(key, 2 + length)
            if before is not None and entry >= before:
                continue
            if len(best) < limit:
                heapq.heappush(best, entry)
            elif limit and entry > best[0]:
                heapq.heapreplace(best, entry)
    return [context_id for _, context_id in sorted(best, reverse=True)], total


def ids_after(txn: Any, dbs: Any, after: int, limit: int) -> list[int]:
    """Up to ``limit`` context ids above ``after``, in id order."""
    cursor = txn.cursor(db=dbs.contexts)
    found: list[int] = []
    if limit <= 0 or after >= (1 << 64) - 1 or not cursor.set_range(_key(after + 1)):
        return found
    for key in cursor.iternext(keys=True, values=False):
        found.append(_U64.unpack(key)[0])
        if len(found) >= limit:
            break
    return found


def child_ids(txn: Any, dbs: Any, context_id: int, limit: int | None = None) -> list[int]:
    """Direct children of a context, oldest first; at most ``limit`` of them."""
    prefix = _key(context_id)
    cursor = txn.cursor(db=dbs.children)
    found: list[int] = []
    if not cursor.set_range(prefix):
        return found
    for key in cursor.iternext(keys=True, values=False):
        if not key.startswith(prefix) or (limit is not None and len(found) >= limit):
            break
        found.append(_U64.unpack_from(key, 8)[0])
    return found
