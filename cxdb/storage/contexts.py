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

A head moves only by :func:`move_head`, a compare-and-set on the stored head.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import Conflict, Corrupt, NotFound
from ..model import ContextId, ContextRecord, Lineage, TurnId
from .writer import WriteContext

__all__ = [
    "child_ids",
    "create",
    "get",
    "ids_by_activity",
    "head",
    "ids_by_tag",
    "move_head",
]

MAX_TAG_BYTES = 400
"""A tag is part of an index key, and LMDB keys are at most 511 bytes."""
_REC = struct.Struct(">QQQQQQQ")
_HEAD = struct.Struct(">QQ")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")


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
        raise NotFound(f"Context {context_id} not found", {"context_id": str(context_id)})
    return found


def head(txn: Any, dbs: Any, context_id: int) -> tuple[int, int]:
    """(head_turn_id, head_depth) of a context; NotFound if it does not exist."""
    value = txn.get(_key(context_id), db=dbs.contexts)
    if value is None:
        raise NotFound(f"Context {context_id} not found", {"context_id": str(context_id)})
    return _HEAD.unpack_from(value)


def create(w: WriteContext, head_turn_id: int, head_depth: int, parent: int, root: int | None,
           fork_turn_id: int, tag: str | None, provenance: dict[str, Any] | None) -> ContextRecord:
    """Allocate an id and write a new context; ``root=None`` makes it its own root."""
    context_id = w.counters.add("next_context")
    w.counters.add("contexts")
    root_id = context_id if root is None else root
    head = (head_turn_id, head_depth, w.now_ms, w.now_ms, parent, root_id, fork_turn_id)
    key = _key(context_id)
    w.txn.put(key, _REC.pack(*head), db=w.dbs.contexts)
    meta = orjson.dumps({"tag": tag, "provenance": provenance})
    w.txn.put(key, meta, db=w.dbs.ctxmeta)
    w.txn.put(_U64.pack(w.now_ms) + key, b"", db=w.dbs.activity)
    if tag is not None:
        w.txn.put(_tag_prefix(tag) + key, b"", db=w.dbs.tags)
    if parent:
        w.txn.put(_key(parent) + key, b"", db=w.dbs.children)
    return _record(context_id, head, meta)


def move_head(w: WriteContext, context_id: int, expected: int, new_head: int, new_depth: int) -> None:
    """Compare-and-set the head of a context from ``expected`` to ``new_head``."""
    key = _key(context_id)
    value = w.txn.get(key, db=w.dbs.contexts)
    if value is None:
        raise NotFound(f"Context {context_id} not found", {"context_id": str(context_id)})
    head_id, _, created, activity, parent, root, fork = _REC.unpack(value)
    if head_id != expected:
        raise Conflict("the context head moved", {"context_id": str(context_id), "expected": str(expected),
                                                   "found": str(head_id)})
    w.txn.put(key, _REC.pack(new_head, new_depth, created, w.now_ms, parent, root, fork), db=w.dbs.contexts)
    if activity != w.now_ms:
        w.txn.delete(_U64.pack(activity) + key, db=w.dbs.activity)
        w.txn.put(_U64.pack(w.now_ms) + key, b"", db=w.dbs.activity)


def ids_by_activity(txn: Any, dbs: Any) -> Iterator[int]:
    """Context ids, newest activity first."""
    cursor = txn.cursor(db=dbs.activity)
    if not cursor.last():
        return
    while True:
        yield _U64.unpack_from(cursor.key(), 8)[0]
        if not cursor.prev():
            return


def ids_by_tag(txn: Any, dbs: Any, tag: str) -> list[int]:
    """Ids of the contexts created with exactly ``tag``."""
    prefix = _tag_prefix(tag)
    cursor = txn.cursor(db=dbs.tags)
    found: list[int] = []
    if not cursor.set_range(prefix):
        return found
    for key in cursor.iternext(keys=True, values=False):
        if not key.startswith(prefix):
            break
        found.append(_U64.unpack_from(key, len(prefix))[0])
    return found


def child_ids(txn: Any, dbs: Any, context_id: int) -> list[int]:
    """Direct children of a context, oldest first."""
    prefix = _key(context_id)
    cursor = txn.cursor(db=dbs.children)
    found: list[int] = []
    if not cursor.set_range(prefix):
        return found
    for key in cursor.iternext(keys=True, values=False):
        if not key.startswith(prefix):
            break
        found.append(_U64.unpack_from(key, 8)[0])
    return found
