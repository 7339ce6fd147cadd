"""Writing exported records back with their own ids and times (:meth:`cxdb.storage.base.Backend.restore`).

One operation of the writer, so one transaction: every record of a restore is written, or none. The
layouts are those of the modules that own each sub-database; this module only decides what to write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...codec import BlobCodec
from ...model import ENCODING_MSGPACK, TurnId
from ..base import Restored, RestoredContext, RestoredTurn
from ..rules import (
    context_being_reclaimed,
    restored_context_clash,
    restored_context_problem,
    restored_references,
    restored_turn_clash,
    restored_turn_problem,
)
from . import blobs, contexts, events, heads, idempotency, refs, turns
from .writer import WriteContext

__all__ = ["restore"]


def restore(w: WriteContext, codec: BlobCodec, observe: Callable[[bytes], None], items: Sequence[RestoredTurn],
            restored: Sequence[RestoredContext]) -> Restored:
    new_turns = present_turns = 0
    for item in items:
        incoming = item.record
        stored = turns.get(w.txn, w.dbs.turns, incoming.turn_id)
        if stored is not None:
            clash = restored_turn_clash(stored[0], incoming)
            if clash is not None:
                raise clash
            present_turns += 1
            continue
        parent = turns.links(w.txn, w.dbs.turns, incoming.parent_turn_id) if incoming.parent_turn_id else None
        problem = restored_turn_problem(incoming, parent[1] if parent is not None else None)
        if problem is not None:
            raise problem
        jump, jump_depth = turns.jump_for(w.txn, w.dbs.turns, incoming.parent_turn_id, parent)
        compression = blobs.put(w, codec, incoming.content_hash, item.payload, observe)
        record = incoming._replace(encoding=ENCODING_MSGPACK, compression=compression,
                                   uncompressed_len=len(item.payload), jump_turn_id=TurnId(jump))
        w.txn.put(turns.key(record.turn_id), turns.encode(record, jump_depth), db=w.dbs.turns)
        refs.set_turn(w, record.turn_id, 0)  # held by nothing until its children and context come
        refs.add_turn(w, record.parent_turn_id, 1)
        w.counters.add("turns")
        if record.turn_id > w.counters.get("next_turn"):
            w.counters.add("next_turn", record.turn_id - w.counters.get("next_turn"))
        new_turns += 1
    new_contexts = present_contexts = 0
    for context in restored:
        wanted = context.record
        stored_context = contexts.get(w.txn, w.dbs, wanted.context_id)
        if stored_context is not None:
            clash = restored_context_clash(stored_context, wanted)
            if clash is not None:
                raise clash
            present_contexts += 1
            if wanted.head_depth > stored_context.head_depth and turns.ancestor_at_depth(
                    w.txn, w.dbs.turns, wanted.head_turn_id, stored_context.head_depth) == (
                    stored_context.head_turn_id):  # appended to in the source since: catch up
                contexts.move_head(w, wanted.context_id, stored_context.head_turn_id, wanted.head_turn_id,
                                   wanted.head_depth)
                refs.add_turn(w, wanted.head_turn_id, 1)
                refs.add_turn(w, stored_context.head_turn_id, -1)
            continue
        if w.txn.get(b"c" + turns.key(wanted.context_id), db=w.dbs.garbage) is not None:
            raise context_being_reclaimed(wanted.context_id)
        depths = {}
        for turn_id in restored_references(context):
            found = turns.links(w.txn, w.dbs.turns, turn_id)
            if found is not None:
                depths[turn_id] = found[1]
        problem = restored_context_problem(context, depths)
        if problem is not None:
            raise problem
        contexts.insert(w, wanted)
        refs.add_turn(w, wanted.head_turn_id, 1)
        for entry in context.history:
            heads.record(w, wanted.context_id, entry.head_turn_id, entry.head_depth, entry.replaced_by_turn_id,
                         entry.replaced_at_ms)
            refs.add_turn(w, entry.head_turn_id, 1)
        for key in context.keys:
            idempotency.remember(w, wanted.context_id, key.key, key.turn_id, key.request, key.created_at_ms)
        events.record(w, "context_created", wanted.context_id, wanted.head_turn_id, wanted.head_depth)
        new_contexts += 1
    return Restored(new_turns, new_contexts, present_turns, present_contexts)
