"""Writing exported records back with their own ids and times (:meth:`cxdb.storage.base.Backend.restore`),
in one transaction of a fixed number of statements whatever the restore holds.

1. Lock the counter row (restores and appends then commit one at a time, as their event sequences
   and id counters need), and read which of the restore's turns and contexts are stored already, the
   links of the parents outside it, and the blobs stored.
2. In memory: each new turn checked against its parent, its jump pointer computed, new payloads
   compressed (off the event loop when they are large).
3. Blobs, turns, contexts, head history, idempotency keys, tag and child totals, events and counters,
   each one statement over arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ...codec import BlobCodec
from ...errors import StoreError, Unprocessable
from ...model import TurnId, TurnRecord
from ..base import Restored, RestoredContext, RestoredTurn
from ..rules import (
    being_reclaimed,
    child_jump,
    context_being_reclaimed,
    restored_context_clash,
    restored_context_problem,
    restored_references,
    restored_turn_clash,
    restored_turn_problem,
)
from .framing import frame
from .rows import ANCESTOR, CONTEXT, SPINE, TURN, context, fits, turn

__all__ = ["restore"]

_LINKS = "WITH RECURSIVE " + SPINE.format(start="$1::bigint[]") + """
SELECT DISTINCT turn_id, depth, jump_turn_id, jump_depth FROM spine"""
_TURNS = """
INSERT INTO turns (turn_id, parent_turn_id, depth, context_id, created_at_ms, jump_turn_id, jump_depth, type_id,
                   type_version, encoding, compression, uncompressed_len, content_hash)
SELECT u.id, u.parent, u.depth, u.context_id, u.created, u.jump, u.jump_depth, u.type_id, u.type_version, 1,
       get_byte(b.stored, 0), u.length, u.hash
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
            $8::bytea[], $9::bigint[], $10::bigint[], $11::bytea[])
     AS u(id, parent, depth, context_id, created, jump, jump_depth, type_id, type_version, length, hash)
JOIN blobs b ON b.content_hash = u.hash"""
_CONTEXTS = """
INSERT INTO contexts (context_id, head_turn_id, head_depth, created_at_ms, last_activity_ms, parent_context_id,
                      root_context_id, fork_turn_id, client_tag, provenance)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::bigint[], $9::bytea[], $10::bytea[])"""
_COUNTS = """
WITH p AS (UPDATE contexts x SET children = x.children + v.n
           FROM (SELECT parent, count(*) AS n FROM unnest($1::bigint[]) AS parent GROUP BY parent) v
           WHERE x.context_id = v.parent RETURNING 1),
t AS (INSERT INTO tag_counts (client_tag, contexts)
      SELECT tag, count(*) FROM unnest($2::bytea[]) AS tag GROUP BY tag
      ON CONFLICT (client_tag) DO UPDATE SET contexts = tag_counts.contexts + excluded.contexts RETURNING 1),
h AS (INSERT INTO head_history (context_id, replaced_by_turn_id, head_turn_id, head_depth, replaced_at_ms)
      SELECT * FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[]) RETURNING 1),
k AS (INSERT INTO idempotency (context_id, idempotency_key, turn_id, created_at_ms, request)
      SELECT * FROM unnest($8::bigint[], $9::bytea[], $10::bigint[], $11::bigint[], $12::bytea[]) RETURNING 1),
c AS (UPDATE counters SET next_turn = greatest(next_turn, $13), turns = turns + $14,
          next_context = greatest(next_context, $15), contexts = contexts + $16, blobs = blobs + $17,
          blob_stored = blob_stored + $18, blob_raw = blob_raw + $19, dedup_misses = dedup_misses + $17,
          dedup_hits = dedup_hits + $14 - $17, next_event = next_event + cardinality($20::bigint[])
      WHERE id = 1 RETURNING next_event - cardinality($20::bigint[]) AS base)
INSERT INTO events (sequence, kind, created_at_ms, context_id, a, b)
SELECT c.base + e.n, 1, $21, e.id, e.head, e.depth
FROM c, unnest($20::bigint[], $22::bigint[], $23::bigint[]) WITH ORDINALITY AS e(id, head, depth, n)"""


async def restore(conn: Any, codec: BlobCodec, now_ms: int, items: Sequence[RestoredTurn],
                  restored: Sequence[RestoredContext]) -> tuple[Restored, list[bytes]]:
    """Run the restore in ``conn``'s open transaction: what it wrote, and the payloads stored new."""
    for record in [item.record for item in items]:
        if not fits(record.turn_id):
            raise Unprocessable(f"turn id {record.turn_id} is out of range", {"turn_id": str(record.turn_id)})
    await conn.execute("SELECT 1 FROM counters WHERE id = 1 FOR UPDATE")
    ids = [item.record.turn_id for item in items]
    stored = {row[0]: turn(row) for row in await conn.fetch(
        f"SELECT {TURN} FROM turns WHERE turn_id = ANY($1::bigint[])", ids)}
    outside = {item.record.parent_turn_id for item in items} | {
        turn_id for c in restored for turn_id in restored_references(c)}
    outside -= set(ids) - set(stored)
    outside.discard(0)
    links = {row[0]: tuple(row[1:]) for row in await conn.fetch(_LINKS, [t for t in outside if fits(t)])}
    fresh = _plan(items, stored, links)
    present = len(items) - len(fresh)
    digests = list({record.content_hash: None for record, _, _ in fresh})
    known = {bytes(row[0]) for row in await conn.fetch(
        "SELECT content_hash FROM blobs WHERE content_hash = ANY($1::bytea[])", digests)}
    payloads: dict[bytes, bytes] = {record.content_hash: payload for record, _, payload in fresh
                                    if record.content_hash not in known}
    framed = [stored for stored, _ in await frame(codec, list(payloads.values()))]
    inserted = await conn.fetch(
        "INSERT INTO blobs (content_hash, stored) SELECT * FROM unnest($1::bytea[], $2::bytea[]) "
        "ON CONFLICT DO NOTHING RETURNING content_hash, length(stored)", list(payloads), framed)
    new_blobs: dict[bytes, int] = {bytes(row[0]): row[1] for row in inserted}
    records = [record for record, _, _ in fresh]
    await conn.execute(_TURNS, [r.turn_id for r in records], [r.parent_turn_id for r in records],
                       [r.depth for r in records], [r.context_id for r in records],
                       [r.created_at_ms for r in records], [r.jump_turn_id for r in records],
                       [jump_depth for _, jump_depth, _ in fresh], [r.type_id.encode() for r in records],
                       [r.type_version for r in records], [len(p) for _, _, p in fresh],
                       [r.content_hash for r in records])
    written, contexts_present, holds = await _contexts(conn, restored, links, now_ms)
    holds.extend((r.parent_turn_id, 1) for r in records)
    holds.extend((c.record.head_turn_id, 1) for c in written)
    holds.extend((e.head_turn_id, 1) for c in written for e in c.history)
    await _hold(conn, holds, [r.content_hash for r in records])
    await conn.execute(
        _COUNTS, [c.record.lineage.parent_context_id for c in written if c.record.lineage.parent_context_id],
        [c.record.client_tag.encode() for c in written if c.record.client_tag is not None],
        *_columns([(c.record.context_id, e.replaced_by_turn_id, e.head_turn_id, e.head_depth, e.replaced_at_ms)
                   for c in written for e in c.history], 5),
        *_columns([(c.record.context_id, k.key.encode(), k.turn_id, k.created_at_ms, k.request)
                   for c in written for k in c.keys], 5),
        max([r.turn_id for r in records], default=0), len(records),
        max([c.record.context_id for c in written], default=0), len(written), len(new_blobs),
        sum(new_blobs.values()), sum(len(payloads[d]) for d in new_blobs),
        [c.record.context_id for c in written], now_ms, [c.record.head_turn_id for c in written],
        [c.record.head_depth for c in written])
    return (Restored(len(records), len(written), present, contexts_present),
            [payloads[digest] for digest in new_blobs])


def _plan(items: Sequence[RestoredTurn], stored: dict[int, TurnRecord],
          links: dict[int, tuple[Any, ...]]) -> list[tuple[TurnRecord, int, bytes]]:
    """The turns to write, each with its jump pointer set, its jump depth and payload; ``links`` gains
    theirs. Raises on a clash with a stored turn or a turn that does not fit its parent."""
    fresh: list[tuple[TurnRecord, int, bytes]] = []
    planned: dict[int, TurnRecord] = {}
    for item in items:
        incoming = item.record
        found = stored.get(incoming.turn_id) or planned.get(incoming.turn_id)
        if found is not None:
            clash = restored_turn_clash(found, incoming)
            if clash is not None:
                raise clash
            continue
        parent = links.get(incoming.parent_turn_id) if incoming.parent_turn_id else None
        problem = restored_turn_problem(incoming, parent[0] if parent is not None else None)
        if problem is not None:
            raise problem
        jump, jump_depth = 0, 0
        if parent is not None:
            depth, parent_jump, parent_jump_depth = parent
            grand = links.get(parent_jump) if parent_jump else (0, 0, 0)
            if grand is None:  # the spine reaches every jump target; a gap is damage
                raise StoreError("a turn's jump target is missing", {"turn_id": str(parent_jump)})
            jump, jump_depth = child_jump(incoming.parent_turn_id, depth, parent_jump_depth, grand[1], grand[2])
        record = incoming._replace(jump_turn_id=TurnId(jump), uncompressed_len=len(item.payload))
        links[record.turn_id] = (record.depth, jump, jump_depth)
        planned[record.turn_id] = record
        fresh.append((record, jump_depth, item.payload))
    return fresh


async def _hold(conn: Any, holds: list[tuple[int, int]], hashes: list[bytes]) -> None:
    """Count the references the restore adds (:mod:`cxdb.storage.lmdb.refs` says what holds a turn);
    a turn marked for deletion cannot be held again."""
    deltas: dict[int, int] = {}
    for turn_id, delta in holds:
        if turn_id:
            deltas[turn_id] = deltas.get(turn_id, 0) + delta
    ids = sorted(turn_id for turn_id, delta in deltas.items() if delta)
    marked = await conn.fetchval("SELECT min(turn_id) FROM gc_turns WHERE marked AND turn_id = ANY($1::bigint[])",
                                 [turn_id for turn_id in ids if deltas[turn_id] > 0])
    if marked is not None:
        raise being_reclaimed(marked)
    await conn.execute("UPDATE turns SET refs = turns.refs + v.d FROM unnest($1::bigint[], $2::bigint[]) AS v(id, d) "
                       "WHERE turns.turn_id = v.id", ids, [deltas[turn_id] for turn_id in ids])
    await conn.execute("UPDATE blobs SET refs = blobs.refs + v.n FROM (SELECT h, count(*) AS n FROM "
                       "unnest($1::bytea[]) AS h GROUP BY h) AS v WHERE blobs.content_hash = v.h", hashes)


async def _contexts(conn: Any, restored: Sequence[RestoredContext], links: dict[int, tuple[Any, ...]],
                    now_ms: int) -> tuple[list[RestoredContext], int, list[tuple[int, int]]]:
    """Write the contexts not stored yet (and move forward the head of one stored whose restored head
    descends from it); those written, how many were stored already, and the reference changes of the
    heads moved."""
    for item in restored:
        if not fits(item.record.context_id):
            raise Unprocessable(f"context id {item.record.context_id} is out of range",
                                {"context_id": str(item.record.context_id)})
    stored = {row[0]: context(row) for row in await conn.fetch(
        f"SELECT {CONTEXT} FROM contexts WHERE context_id = ANY($1::bigint[])",
        [c.record.context_id for c in restored])}
    tomb = await conn.fetchval("SELECT min(context_id) FROM gc_contexts WHERE context_id = ANY($1::bigint[])",
                               [c.record.context_id for c in restored])
    if tomb is not None:
        raise context_being_reclaimed(tomb)
    written: list[RestoredContext] = []
    holds: list[tuple[int, int]] = []
    for item in restored:
        found = stored.get(item.record.context_id)
        if found is not None:
            clash = restored_context_clash(found, item.record)
            if clash is not None:
                raise clash
            record = item.record
            if record.head_depth > found.head_depth and await conn.fetchval(
                    ANCESTOR, record.head_turn_id, found.head_depth) == found.head_turn_id:
                await conn.execute(  # appended to in the source since: catch up
                    "UPDATE contexts SET head_turn_id = $2, head_depth = $3, last_activity_ms = $4 "
                    "WHERE context_id = $1 AND head_turn_id = $5", record.context_id, record.head_turn_id,
                    record.head_depth, now_ms, found.head_turn_id)
                holds.extend(((record.head_turn_id, 1), (found.head_turn_id, -1)))
            continue
        depths = {turn_id: links[turn_id][0] for turn_id in restored_references(item) if turn_id in links}
        problem = restored_context_problem(item, depths)
        if problem is not None:
            raise problem
        written.append(item)
    records = [c.record for c in written]
    await conn.execute(_CONTEXTS, [r.context_id for r in records], [r.head_turn_id for r in records],
                       [r.head_depth for r in records], [r.created_at_ms for r in records],
                       [r.last_activity_ms for r in records], [r.lineage.parent_context_id for r in records],
                       [r.lineage.root_context_id for r in records], [r.lineage.fork_turn_id for r in records],
                       [r.client_tag.encode() if r.client_tag is not None else None for r in records],
                       [orjson.dumps(r.provenance) if r.provenance is not None else None for r in records])
    return written, len(restored) - len(written), holds


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
