"""Immutable turn records and walks along their parent chains.

Sub-database ``turns``: key = turn_id as u64 big-endian; value::

    offset  size  field
    0       8     parent_turn_id      u64 BE (0: none)
    8       8     depth               u64 BE (first turn: 1)
    16      8     context_id          u64 BE, the context it was appended in
    24      8     created_at_ms       u64 BE
    32      8     jump_turn_id        u64 BE, skew-binary jump pointer (0: the root)
    40      8     jump_depth          u64 BE, depth of jump_turn_id
    48      4     type_version        u32 BE
    52      1     encoding            1 = msgpack
    53      1     compression         0 = none, 1 = zstd
    54      4     uncompressed_len    u32 BE
    58      32    content hash        BLAKE3-256
    90      ...   type_id             UTF-8

Jump pointers (Myers' skew-binary scheme) let :func:`ancestor_at_depth` find
any ancestor in O(log depth) reads, so a paging cursor can be checked against
a context's chain at any depth without walking it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import Corrupt
from ...model import BlobHash, ContextId, TurnId, TurnRecord
from ..rules import child_jump, jump_step

__all__ = ["Links", "ancestor_at_depth", "decode", "encode", "get", "jump_for", "key", "links", "pack", "walk"]

_REC = struct.Struct(">QQQQQQIBBI32s")
_LINKS = struct.Struct(">QQ16xQQ")
_U64 = struct.Struct(">Q")

Links = tuple[int, int, int, int]
"""(parent_turn_id, depth, jump_turn_id, jump_depth): what walking or extending a chain needs of a turn."""


def key(turn_id: int) -> bytes:
    return _U64.pack(turn_id)


def encode(turn: TurnRecord, jump_depth: int) -> bytes:
    return _REC.pack(turn.parent_turn_id, turn.depth, turn.context_id, turn.created_at_ms,
                     turn.jump_turn_id, jump_depth, turn.type_version, turn.encoding,
                     turn.compression, turn.uncompressed_len, turn.content_hash) + turn.type_id.encode()


pack = _REC.pack
"""The fixed part of a record from its fields in layout order (:func:`encode` without a TurnRecord);
the type id's UTF-8 follows it."""


def decode(turn_id: int, value: bytes) -> tuple[TurnRecord, int]:
    """The record and its jump depth."""
    try:
        (parent, depth, context_id, created, jump, jump_depth, version, encoding, compression,
         length, digest) = _REC.unpack_from(value)
        type_id = bytes(value[_REC.size:]).decode()
    except (struct.error, UnicodeDecodeError) as exc:
        raise Corrupt("turn record does not decode", {"turn_id": str(turn_id)}) from exc
    record = TurnRecord(TurnId(turn_id), TurnId(parent), depth, ContextId(context_id), type_id, version,
                        encoding, compression, length, BlobHash(digest), created, TurnId(jump))
    return record, jump_depth


def get(txn: Any, turns_db: Any, turn_id: int) -> tuple[TurnRecord, int] | None:
    """The turn and its jump depth, or None."""
    value = txn.get(_U64.pack(turn_id), db=turns_db)
    return decode(turn_id, value) if value is not None else None


def links(txn: Any, turns_db: Any, turn_id: int) -> Links | None:
    """A turn's parent, depth and jump pointer, without decoding the whole record; None if absent."""
    value = txn.get(_U64.pack(turn_id), db=turns_db)
    return _LINKS.unpack_from(value) if value is not None else None


def _must(txn: Any, turns_db: Any, turn_id: int) -> tuple[TurnRecord, int]:
    found = get(txn, turns_db, turn_id)
    if found is None:
        raise Corrupt("a turn's ancestor is missing", {"turn_id": str(turn_id)})
    return found


def jump_for(txn: Any, turns_db: Any, parent_id: int, parent: Links | None,
             known: Mapping[int, Links] | None = None) -> tuple[int, int]:
    """The jump pointer and its depth for a new child of ``parent_id`` (0: the root); ``known`` holds
    the links of turns the same write has made but not yet put."""
    if parent is None:
        return 0, 0
    _, depth, jump, jump_depth = parent
    if jump == 0:
        grand_jump, grand_jump_depth = 0, 0
    else:
        jumped = known.get(jump) if known else None
        if jumped is None:
            jumped = links(txn, turns_db, jump)
        if jumped is None:
            raise Corrupt("a turn's jump target is missing", {"turn_id": str(jump)})
        _, _, grand_jump, grand_jump_depth = jumped
    return child_jump(parent_id, depth, jump_depth, grand_jump, grand_jump_depth)


def ancestor_at_depth(txn: Any, turns_db: Any, turn_id: int, depth: int) -> int:
    """The id of the ancestor of ``turn_id`` (itself included) at ``depth``; 0 if there is none.

    Follows jump pointers where they do not overshoot, so it takes O(log depth) reads.
    """
    found = links(txn, turns_db, turn_id)
    if found is None:
        return 0
    parent, current, jump, jump_depth = found
    if depth <= 0 or depth > current:
        return 0
    while current > depth:
        turn_id = jump_step(parent, jump, jump_depth, depth)
        found = links(txn, turns_db, turn_id)
        if found is None:
            raise Corrupt("a turn's ancestor is missing", {"turn_id": str(turn_id)})
        parent, current, jump, jump_depth = found
    return turn_id


def walk(txn: Any, turns_db: Any, start: int, limit: int) -> Iterator[TurnRecord]:
    """Up to ``limit`` turns from ``start`` toward the root, newest first."""
    turn_id = start
    while turn_id and limit > 0:
        record, _ = _must(txn, turns_db, turn_id)
        yield record
        turn_id = record.parent_turn_id
        limit -= 1
