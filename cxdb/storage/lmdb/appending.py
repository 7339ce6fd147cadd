"""The append write: a chain of turns, its blobs, events and head move, as one writer operation.

Every append waits for the writer's time (with several server processes, every process does: LMDB's
write lock), so the operation does only what needs the transaction: checks against the stored head
and parent, compressing the blobs that are new, and the puts. Payloads are hashed before it runs
(:func:`cxdb.storage.rules.prepare`), and the records it returns are built after the commit
(:func:`results`). Its puts go in one ``putmulti`` per sub-database, and its new blobs are compressed
in one zstd call: each of those calls releases the GIL, and a thread that releases it while the event
loop runs Python may wait a long while to get it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...codec import BlobCodec
from ...model import ENCODING_MSGPACK, BlobHash, ContextId, TurnId, TurnRecord
from ..base import AppendResult, NewTurn, RegistryMoved
from ..rules import head_moved, parent_not_found, partly_replayed
from . import blobs, contexts, events, heads, idempotency, refs, turns
from .writer import WriteContext

__all__ = ["Written", "operation", "results"]

Prepared = Sequence[tuple[NewTurn, BlobHash, bytes]]
"""Each turn with its content hash and what its idempotency key stands for (see ``prepare``)."""


@dataclass(slots=True)
class Written:
    """What an append wrote, from which :func:`results` builds its records after the commit."""

    first: int
    """The first new turn's id; the others follow it."""
    parent_id: int
    depth: int
    """The first new turn's depth."""
    now_ms: int
    replaced: int | None
    jumps: list[int] = field(default_factory=list)
    compressions: list[int] = field(default_factory=list)


def operation(context_id: int, prepared: Prepared, parent_turn_id: int | None, expected_head_turn_id: int | None,
              registry_generation: int | None, codec: BlobCodec,
              observe: Callable[[bytes], None]) -> Callable[[WriteContext], list[AppendResult] | Written]:
    """The writer operation appending ``prepared`` as a chain; it returns the earlier results when the
    whole batch is a replay of its idempotency keys."""

    def op(w: WriteContext) -> list[AppendResult] | Written:
        if registry_generation is not None and w.counters.get("bundles") != registry_generation:
            raise RegistryMoved("the registry changed", {"generation": w.counters.get("bundles")})
        head_id, head_depth = contexts.head(w.txn, w.dbs, context_id)
        replays = _replays(w, context_id, prepared)
        if replays is not None:
            return replays
        if expected_head_turn_id is not None and head_id != expected_head_turn_id:
            raise head_moved(context_id, expected_head_turn_id, head_id)
        parent_id = head_id if parent_turn_id is None else parent_turn_id
        parent = turns.links(w.txn, w.dbs.turns, parent_id) if parent_id else None
        if parent_id and (parent is None or (
                parent_id != head_id and not refs.turn_count(w.txn, w.dbs, parent_id))):
            raise parent_not_found(context_id, parent_id)  # absent, or awaiting reclamation
        replaced = None
        if head_id and parent_id != head_id and (
                turns.ancestor_at_depth(w.txn, w.dbs.turns, parent_id, head_depth) != head_id):
            replaced = head_id
        compressions = blobs.put_all(w, codec, [(digest, item.payload) for item, digest, _ in prepared], observe)
        count = len(prepared)
        first = w.counters.add("next_turn", count) - count + 1
        w.counters.add("turns", count)
        written = Written(first, parent_id, (parent[1] if parent else 0) + 1, w.now_ms, replaced,
                          compressions=compressions)
        made: dict[int, turns.Links] = {}  # the new turns' links: they are put after the loop
        records = []
        for index, (item, digest, request) in enumerate(prepared):
            turn_id = first + index
            jump, jump_depth = turns.jump_for(w.txn, w.dbs.turns, parent_id, parent, made)
            depth = written.depth + index
            records.append((turns.key(turn_id), turns.pack(
                parent_id, depth, context_id, w.now_ms, jump, jump_depth, item.type_version, ENCODING_MSGPACK,
                compressions[index], len(item.payload), digest) + item.type_id.encode()))
            # Held by one thing (its child in the chain, or the head): no count to write (.refs).
            if item.idempotency_key is not None:
                idempotency.remember(w, context_id, item.idempotency_key, turn_id, request)
            written.jumps.append(jump)
            parent_id, parent = turn_id, (parent_id, depth, jump, jump_depth)
            made[turn_id] = parent
        w.txn.cursor(db=w.dbs.turns).putmulti(records)
        events.record_turns(w, context_id, range(first, first + count))
        contexts.move_head(w, context_id, head_id, first + count - 1, written.depth + count - 1)
        if replaced is not None:  # the history entry takes over the head's reference: it stays reachable
            heads.record(w, context_id, replaced, head_depth, first)
            refs.add_turn(w, written.parent_id, 1)
        elif written.parent_id != head_id:  # a descendant of the head: the new chain holds the head
            refs.add_turn(w, written.parent_id, 1)
            refs.add_turn(w, head_id, -1)
        return written

    return op


def results(context_id: int, prepared: Prepared, done: list[AppendResult] | Written) -> list[AppendResult]:
    """The append's results: the records :func:`operation` wrote (or the replayed ones it found)."""
    if not isinstance(done, Written):
        return done
    found: list[AppendResult] = []
    parent_id = done.parent_id
    for index, (item, digest, _) in enumerate(prepared):
        turn_id = TurnId(done.first + index)
        record = TurnRecord(turn_id, TurnId(parent_id), done.depth + index, ContextId(context_id), item.type_id,
                            item.type_version, ENCODING_MSGPACK, done.compressions[index], len(item.payload),
                            digest, done.now_ms, TurnId(done.jumps[index]))
        found.append(AppendResult(record, False, done.replaced if not index else None))
        parent_id = turn_id
    return found


def _replays(w: WriteContext, context_id: int, prepared: Prepared) -> list[AppendResult] | None:
    """The earlier turns when every item repeats its idempotency key (a replay of the whole batch);
    None when none does; Conflict for a key reused with another request, or a batch partly replayed."""
    found: list[AppendResult] = []
    replayed: list[int] = []
    for index, (item, _, request) in enumerate(prepared):
        if item.idempotency_key is None:
            continue
        earlier = idempotency.lookup(w.txn, w.dbs.idem, context_id, item.idempotency_key, request)
        record = turns.get(w.txn, w.dbs.turns, earlier) if earlier is not None else None
        if record is not None:
            replayed.append(index)
            replaced = heads.replaced_by(w.txn, w.dbs, context_id, record[0].turn_id)
            found.append(AppendResult(record[0], True, replaced))
    if not replayed:
        return None
    if len(replayed) != len(prepared):
        raise partly_replayed(context_id, replayed)
    return found
