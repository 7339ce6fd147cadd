"""The event log: one entry per change a subscriber may care about, written in the change's own
transaction.

Sub-database ``events``: key = sequence u64 BE (from counter ``next_event``, so strictly increasing
in commit order: there is one writer); value (33 bytes)::

    offset  size  field
    0       1     kind: 1 context_created, 2 turn_appended, 3 registry_published, 4 context_deleted
    1       8     created_at_ms   u64 BE
    9       8     context_id      u64 BE (0 for registry_published)
    17      8     a               turn_id (turn_appended), head turn (context_created, context_deleted),
                                  bundle sequence
    25      8     b               head depth (context_created, context_deleted), else 0

What an event names is immutable (a turn, a context's creation, a bundle), so reading it back joins
the current records and the event says exactly what it said when written.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from ...errors import Corrupt
from ...model import U64_MAX
from ..base import EVENT_KINDS, Event
from . import contexts, turns
from .writer import WriteContext

__all__ = ["bounds", "prune", "read", "record", "record_turns"]

_VALUE = struct.Struct(">BQQQQ")
_U64 = struct.Struct(">Q")


def record(w: WriteContext, kind: str, context_id: int = 0, a: int = 0, b: int = 0) -> int:
    sequence = w.counters.add("next_event")
    w.txn.put(_U64.pack(sequence), _VALUE.pack(EVENT_KINDS.index(kind) + 1, w.now_ms, context_id, a, b),
              db=w.dbs.events)
    return sequence


def record_turns(w: WriteContext, context_id: int, turn_ids: Sequence[int]) -> None:
    """A ``turn_appended`` event for each of ``turn_ids``, in order: :func:`record` for a batch."""
    last = w.counters.add("next_event", len(turn_ids))
    code = EVENT_KINDS.index("turn_appended") + 1
    first = last - len(turn_ids) + 1
    w.txn.cursor(db=w.dbs.events).putmulti(
        [(_U64.pack(first + index), _VALUE.pack(code, w.now_ms, context_id, turn_id, 0))
         for index, turn_id in enumerate(turn_ids)])


def read(txn: Any, dbs: Any, after: int, limit: int) -> list[Event]:
    found: list[Event] = []
    cursor = txn.cursor(db=dbs.events)
    if limit <= 0 or after >= U64_MAX or not cursor.set_range(_U64.pack(after + 1)):
        return found
    for key, value in cursor:
        sequence = _U64.unpack(key)[0]
        try:
            code, created, context_id, a, b = _VALUE.unpack(value)
            kind = EVENT_KINDS[code - 1]
        except (struct.error, IndexError) as exc:
            raise Corrupt("event record does not decode", {"sequence": str(sequence)}) from exc
        found.append(_materialize(txn, dbs, sequence, kind, created, context_id, a, b))
        if len(found) >= limit:
            break
    return found


def _materialize(txn: Any, dbs: Any, sequence: int, kind: str, created: int, context_id: int, a: int,
                 b: int) -> Event:
    if kind == "turn_appended":
        turn = turns.get(txn, dbs.turns, a)
        return Event(sequence, kind, created, turn=turn[0] if turn is not None else None)
    if kind == "context_created":
        return Event(sequence, kind, created, context=contexts.get(txn, dbs, context_id), head_turn_id=a,
                     head_depth=b)
    if kind == "context_deleted":
        return Event(sequence, kind, created, context_id=context_id, head_turn_id=a, head_depth=b)
    raw_id = txn.get(_U64.pack(a), db=dbs.bundleseq)
    return Event(sequence, kind, created, bundle_id=bytes(raw_id).decode() if raw_id is not None else None)


def bounds(txn: Any, dbs: Any, newest: int) -> tuple[int, int]:
    cursor = txn.cursor(db=dbs.events)
    return (_U64.unpack(cursor.key())[0] if cursor.first() else 0), newest


def prune(w: WriteContext, before_ms: int, limit: int) -> int:
    """Delete up to ``limit`` of the oldest events older than ``before_ms``."""
    cursor = w.txn.cursor(db=w.dbs.events)
    deleted = 0
    while deleted < limit and cursor.first():
        if _VALUE.unpack(cursor.value())[1] >= before_ms:
            break
        cursor.delete()
        deleted += 1
    return deleted

