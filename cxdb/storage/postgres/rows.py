"""Rows to records: the columns each query selects, and how they become the shared records."""

from __future__ import annotations

from typing import Any

import orjson

from ...model import BlobHash, ContextId, ContextRecord, Lineage, TurnId, TurnRecord

__all__ = ["ANCESTOR", "CONTEXT", "I64_MAX", "SPINE", "SPINE_HOPS", "TURN", "context", "fits", "text", "turn"]

I64_MAX = (1 << 63) - 1
"""The largest id a ``bigint`` holds; cxdb allocates from 1, so no stored id is above it."""

TURN = ("turn_id, parent_turn_id, depth, context_id, type_id, type_version, encoding, compression, "
        "uncompressed_len, content_hash, created_at_ms, jump_turn_id")
CONTEXT = ("context_id, head_turn_id, head_depth, created_at_ms, last_activity_ms, client_tag, provenance, "
           "parent_context_id, root_context_id, fork_turn_id")


def fits(value: int) -> bool:
    """True when a u64 from a request can name a stored row at all."""
    return 0 <= value <= I64_MAX


def text(value: bytes | None) -> str | None:
    return bytes(value).decode() if value is not None else None


def turn(row: Any, at: int = 0) -> TurnRecord:
    return TurnRecord(TurnId(row[at]), TurnId(row[at + 1]), row[at + 2], ContextId(row[at + 3]),
                      bytes(row[at + 4]).decode(), row[at + 5], row[at + 6], row[at + 7], row[at + 8],
                      BlobHash(bytes(row[at + 9])), row[at + 10], TurnId(row[at + 11]))


def context(row: Any, at: int = 0) -> ContextRecord:
    provenance = row[at + 6]
    parent, fork = row[at + 7], row[at + 9]
    lineage = Lineage(ContextId(parent) if parent else None, ContextId(row[at + 8]), TurnId(fork) if fork else None)
    return ContextRecord(ContextId(row[at]), TurnId(row[at + 1]), row[at + 2], row[at + 3], row[at + 4],
                         text(row[at + 5]), orjson.loads(provenance) if provenance is not None else None, lineage)


# The id of the turn at depth $2 on the chain of turn $1, by jump pointers (rules.jump_step): O(log depth)
# rows, each a primary-key lookup.
ANCESTOR = """
WITH RECURSIVE walk(turn_id, depth, parent_turn_id, jump_turn_id, jump_depth) AS (
    SELECT turn_id, depth, parent_turn_id, jump_turn_id, jump_depth FROM turns WHERE turn_id = $1
    UNION ALL
    SELECT t.* FROM walk w CROSS JOIN LATERAL (
        SELECT turn_id, depth, parent_turn_id, jump_turn_id, jump_depth FROM turns WHERE turn_id = CASE
            WHEN w.jump_turn_id <> 0 AND w.jump_depth >= $2 THEN w.jump_turn_id ELSE w.parent_turn_id END
        LIMIT 1) t
    WHERE w.depth > $2)
SELECT turn_id FROM walk WHERE depth = $2"""


SPINE_HOPS = 192
# The jump-pointer spines of the turns {start} names: O(log depth) rows each, all the skew-binary pointers
# of any chain grown from them need. Each step is a primary-key lookup: LATERAL ... LIMIT 1 keeps the
# planner from joining the recursion to a scan of turns, which it picks when its statistics lag behind.
SPINE = """spine(turn_id, depth, jump_turn_id, jump_depth, hops) AS (
    SELECT turn_id, depth, jump_turn_id, jump_depth, 0 FROM turns
    WHERE turn_id = ANY({start})
    UNION ALL
    SELECT t.turn_id, t.depth, t.jump_turn_id, t.jump_depth, s.hops + 1
    FROM spine s CROSS JOIN LATERAL (
        SELECT turn_id, depth, jump_turn_id, jump_depth FROM turns WHERE turn_id = s.jump_turn_id LIMIT 1) t
    WHERE s.jump_turn_id <> 0 AND s.hops < """ + str(SPINE_HOPS) + ")"
