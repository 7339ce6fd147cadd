"""Deleting contexts, expiring history and keys, and reclaiming what nothing reaches any more, on
PostgreSQL: the same design as :mod:`cxdb.storage.lmdb.lifecycle`, with ``turns.refs`` and
``blobs.refs`` for the counts, ``gc_contexts`` and ``gc_turns`` for the queue, and blobs of ``refs = 0``
(a partial index) for the blobs no turn names.

Several gateways may reclaim at once: each step takes its rows ``FOR UPDATE SKIP LOCKED``, so they
share the work instead of waiting on each other. An append racing a step either holds its blob or
parent first (the step's ``refs = 0`` checks then skip it) or finds it gone and runs again
(:class:`~cxdb.storage.postgres.batch.ReclaimRace`).
"""

from __future__ import annotations

from typing import Any

from ..base import Pending, Reclaimed
from ..rules import MAX_DELETE, missing_context, too_many_to_delete
from .rows import fits

__all__ = ["RELEASE", "delete", "expire", "pending", "reclaim"]

RELEASE = """
WITH r AS (
    UPDATE turns SET refs = greatest(turns.refs - v.n, 0)
    FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id WHERE id <> 0 GROUP BY id) AS v
    WHERE turns.turn_id = v.id RETURNING turns.turn_id, turns.refs)
INSERT INTO gc_turns (turn_id) SELECT turn_id FROM r WHERE refs = 0 ON CONFLICT DO NOTHING"""
"""Drop one reference per id listed (an id may repeat); turns left with none are queued."""
_DELETE = """
WITH d AS (
    DELETE FROM contexts WHERE context_id = ANY($1::bigint[])
    RETURNING context_id, head_turn_id, head_depth, parent_context_id, client_tag),
p AS (
    UPDATE contexts x SET children = greatest(x.children - v.n, 0)
    FROM (SELECT parent_context_id AS id, count(*) AS n FROM d WHERE parent_context_id IS NOT NULL GROUP BY 1) v
    WHERE x.context_id = v.id AND NOT x.context_id = ANY($1::bigint[]) RETURNING 1),
t AS (
    UPDATE tag_counts g SET contexts = g.contexts - v.n
    FROM (SELECT client_tag, count(*) AS n FROM d WHERE client_tag IS NOT NULL GROUP BY 1) v
    WHERE g.client_tag = v.client_tag RETURNING 1),
g AS (INSERT INTO gc_contexts (context_id) SELECT context_id FROM d RETURNING 1),
k AS (
    UPDATE counters SET contexts = contexts - (SELECT count(*) FROM d),
        next_event = next_event + (SELECT count(*) FROM d)
    WHERE id = 1 RETURNING next_event - (SELECT count(*) FROM d) AS base),
e AS (
    INSERT INTO events (sequence, kind, created_at_ms, context_id, a, b)
    SELECT k.base + row_number() OVER (ORDER BY d.context_id), 4, $2, d.context_id, d.head_turn_id, d.head_depth
    FROM k, d RETURNING 1)
SELECT d.context_id, d.head_turn_id, d.client_tag, (SELECT count(*) FROM p) + (SELECT count(*) FROM t)
       + (SELECT count(*) FROM g) + (SELECT count(*) FROM e)
FROM d ORDER BY d.context_id"""
_DESCENDANTS = """
WITH RECURSIVE tree(context_id) AS (
    SELECT context_id FROM contexts WHERE parent_context_id = $1
    UNION ALL
    SELECT c.context_id FROM tree t CROSS JOIN LATERAL (
        SELECT context_id FROM contexts WHERE parent_context_id = t.context_id OFFSET 0) c)
SELECT context_id FROM tree LIMIT $2"""
_PURGE_HISTORY = """
DELETE FROM head_history WHERE (context_id, replaced_by_turn_id) IN (
    SELECT context_id, replaced_by_turn_id FROM head_history WHERE context_id = ANY($1::bigint[]) LIMIT $2)
RETURNING head_turn_id"""
_PURGE_KEYS = """
WITH d AS (DELETE FROM idempotency WHERE (context_id, idempotency_key) IN (
    SELECT context_id, idempotency_key FROM idempotency WHERE context_id = ANY($1::bigint[]) LIMIT $2) RETURNING 1)
SELECT count(*) FROM d"""
_QUEUED = """
SELECT g.turn_id, t.refs, t.parent_turn_id, t.content_hash
FROM gc_turns g LEFT JOIN turns t ON t.turn_id = g.turn_id
WHERE NOT g.marked ORDER BY g.turn_id LIMIT $1 FOR UPDATE OF g SKIP LOCKED"""
_MARK = """
WITH m AS (UPDATE gc_turns SET marked = true WHERE turn_id = ANY($1::bigint[]) RETURNING 1),
x AS (DELETE FROM gc_turns WHERE turn_id = ANY($2::bigint[]) RETURNING 1),
b AS (
    UPDATE blobs SET refs = greatest(blobs.refs - v.n, 0)
    FROM (SELECT hash, count(*) AS n FROM unnest($3::bytea[]) AS hash GROUP BY hash) AS v
    WHERE blobs.content_hash = v.hash RETURNING 1)
SELECT (SELECT count(*) FROM m) + (SELECT count(*) FROM x) + (SELECT count(*) FROM b)"""
_FREE = """
WITH q AS (SELECT turn_id FROM gc_turns WHERE marked ORDER BY turn_id LIMIT $1 FOR UPDATE SKIP LOCKED),
g AS (DELETE FROM gc_turns WHERE turn_id IN (SELECT turn_id FROM q) RETURNING turn_id),
t AS (DELETE FROM turns WHERE turn_id IN (SELECT turn_id FROM g) RETURNING 1),
u AS (SELECT content_hash FROM blobs WHERE refs = 0 LIMIT $2 FOR UPDATE SKIP LOCKED),
b AS (
    DELETE FROM blobs WHERE content_hash IN (SELECT content_hash FROM u) AND refs = 0
    RETURNING octet_length(stored) AS size,
              (get_byte(stored, 1) << 24) | (get_byte(stored, 2) << 16) | (get_byte(stored, 3) << 8)
              | get_byte(stored, 4) AS raw),
f AS (SELECT (SELECT count(*) FROM t) AS freed_turns, count(*) AS freed_blobs, coalesce(sum(size), 0) AS size,
             coalesce(sum(raw), 0) AS raw FROM b),
c AS (
    UPDATE counters SET turns = counters.turns - f.freed_turns, blobs = counters.blobs - f.freed_blobs,
        blob_stored = blob_stored - f.size, blob_raw = blob_raw - f.raw
    FROM f WHERE id = 1 AND (f.freed_turns > 0 OR f.freed_blobs > 0) RETURNING 1)
SELECT f.freed_turns, f.freed_blobs, f.size, (SELECT count(*) FROM c) FROM f"""
_MORE = """
SELECT EXISTS (SELECT 1 FROM gc_contexts) OR EXISTS (SELECT 1 FROM gc_turns)
       OR EXISTS (SELECT 1 FROM blobs WHERE refs = 0)"""
_EXPIRE_HISTORY = """
DELETE FROM head_history WHERE (context_id, replaced_by_turn_id) IN (
    SELECT context_id, replaced_by_turn_id FROM head_history WHERE replaced_at_ms < $1
    ORDER BY replaced_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING head_turn_id"""
_EXPIRE_KEYS = """
WITH d AS (DELETE FROM idempotency WHERE (context_id, idempotency_key) IN (
    SELECT context_id, idempotency_key FROM idempotency WHERE created_at_ms < $1
    ORDER BY created_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
SELECT count(*) FROM d"""
_PENDING = """
SELECT (SELECT count(*) FROM gc_contexts), (SELECT count(*) FROM gc_turns),
       (SELECT count(*) FROM blobs WHERE refs = 0),
       (SELECT coalesce(sum(octet_length(stored)), 0) FROM blobs WHERE refs = 0)::bigint"""


async def delete(conn: Any, context_id: int, recursive: bool, now_ms: int) -> list[int]:
    """In ``conn``'s open transaction."""
    if not fits(context_id) or await conn.fetchval(
            "SELECT 1 FROM contexts WHERE context_id = $1 FOR UPDATE", context_id) is None:
        raise missing_context(context_id)
    ids = [context_id]
    if recursive:
        below = [row[0] for row in await conn.fetch(_DESCENDANTS, context_id, MAX_DELETE)]
        if len(below) + 1 > MAX_DELETE:
            raise too_many_to_delete(context_id, len(below) + 1, MAX_DELETE)
        await conn.execute("SELECT 1 FROM contexts WHERE context_id = ANY($1::bigint[]) ORDER BY context_id "
                           "FOR UPDATE", below)
        ids.extend(below)
    rows = await conn.fetch(_DELETE, ids, now_ms)
    await conn.execute(RELEASE, [row[1] for row in rows])
    tags = list({bytes(row[2]) for row in rows if row[2] is not None})
    await conn.execute("DELETE FROM tag_counts WHERE client_tag = ANY($1::bytea[]) AND contexts <= 0", tags)
    return [row[0] for row in rows]


async def reclaim(conn: Any, budget: int) -> Reclaimed:
    # Deleted contexts, many at once: a few statements whatever their number (each bounded by budget).
    tombs = [row[0] for row in await conn.fetch(
        "SELECT context_id FROM gc_contexts ORDER BY context_id LIMIT $1 FOR UPDATE SKIP LOCKED", budget)]
    work = purged = 0
    if tombs:
        heads = [row[0] for row in await conn.fetch(_PURGE_HISTORY, tombs, budget)]
        await conn.execute(RELEASE, heads)
        keys = await conn.fetchval(_PURGE_KEYS, tombs, budget)
        work = len(tombs) + len(heads) + keys
        if len(heads) < budget and keys < budget:  # all of theirs are gone; else the next step goes on
            await conn.execute("DELETE FROM gc_contexts WHERE context_id = ANY($1::bigint[])", tombs)
            purged = len(tombs)
    while work < budget:
        rows = await conn.fetch(_QUEUED, budget - work)
        if not rows:
            break
        work += len(rows)
        marked = [row for row in rows if row[1] == 0]
        await conn.fetchval(_MARK, [row[0] for row in marked], [row[0] for row in rows if row[1] != 0],
                            [bytes(row[3]) for row in marked])
        await conn.execute(RELEASE, [row[2] for row in marked])
    turns, blobs, size, _ = await conn.fetchrow(_FREE, max(budget - work, 1), max(budget - work, 1))
    return Reclaimed(purged, turns, blobs, size, bool(await conn.fetchval(_MORE)))


async def expire(conn: Any, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
    heads = [row[0] for row in await conn.fetch(_EXPIRE_HISTORY, history_before_ms, budget)]
    await conn.execute(RELEASE, heads)
    return len(heads), await conn.fetchval(_EXPIRE_KEYS, keys_before_ms, budget)


async def pending(conn: Any) -> Pending:
    return Pending(*await conn.fetchrow(_PENDING))
