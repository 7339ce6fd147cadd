"""Integrity check of a PostgreSQL store: what :mod:`cxdb.storage.lmdb.check` verifies, in SQL.

Blobs are read through a server-side cursor in one read-only repeatable-read transaction, so memory
stays bounded and every figure comes from one snapshot; the structural checks are joins that the
database runs, each listing at most :data:`~cxdb.storage.report.MAX_PROBLEMS` rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...codec import content_hash
from ...errors import CxdbError
from ..report import MAX_PROBLEMS, Report

__all__ = ["check_database"]

# A turn marked for deletion: its parent and blob no longer count it, and may be gone before it.
_LIVE = "NOT EXISTS (SELECT 1 FROM gc_turns g WHERE g.turn_id = {t}.turn_id AND g.marked)"
_HOLDERS = (f"SELECT parent_turn_id FROM turns x WHERE parent_turn_id <> 0 AND {_LIVE.format(t='x')} "
            "UNION ALL SELECT head_turn_id FROM contexts WHERE head_turn_id <> 0 "
            "UNION ALL SELECT head_turn_id FROM head_history")
# (kind, the query listing its cases as (id column name, id, extra), the query counting them)
_FINDINGS = (
    ("turn_parent_missing", "turn_id",
     "FROM turns t LEFT JOIN turns p ON p.turn_id = t.parent_turn_id WHERE t.parent_turn_id <> 0 AND p.turn_id IS NULL "
     f"AND {_LIVE.format(t='t')}",
     "t.turn_id, t.parent_turn_id"),
    ("turn_depth_wrong", "turn_id",
     "FROM turns t LEFT JOIN turns p ON p.turn_id = t.parent_turn_id "
     "WHERE (t.parent_turn_id = 0 AND t.depth <> 1) OR (p.turn_id IS NOT NULL AND p.depth <> t.depth - 1)",
     "t.turn_id, t.depth"),
    ("turn_blob_missing", "turn_id",
     "FROM turns t LEFT JOIN blobs b ON b.content_hash = t.content_hash WHERE b.content_hash IS NULL "
     f"AND {_LIVE.format(t='t')}",
     "t.turn_id, t.content_hash"),
    ("head_missing", "context_id",
     "FROM contexts c LEFT JOIN turns t ON t.turn_id = c.head_turn_id WHERE c.head_turn_id <> 0 AND t.turn_id IS NULL",
     "c.context_id, c.head_turn_id"),
    ("head_depth_wrong", "context_id",
     "FROM contexts c LEFT JOIN turns t ON t.turn_id = c.head_turn_id "
     "WHERE (c.head_turn_id = 0 AND c.head_depth <> 0) OR (t.turn_id IS NOT NULL AND t.depth <> c.head_depth)",
     "c.context_id, c.head_depth"),
    ("head_history_wrong", "context_id",
     "FROM head_history h LEFT JOIN contexts c ON c.context_id = h.context_id "
     "LEFT JOIN gc_contexts d ON d.context_id = h.context_id LEFT JOIN turns t ON t.turn_id = h.head_turn_id "
     "WHERE (c.context_id IS NULL AND d.context_id IS NULL) OR t.turn_id IS NULL OR t.depth <> h.head_depth",
     "h.context_id, h.replaced_by_turn_id"),
    ("turn_refs_wrong", "turn_id",
     f"FROM turns t LEFT JOIN (SELECT id, count(*) AS actual FROM ({_HOLDERS}) AS h(id) GROUP BY id) a "
     "ON a.id = t.turn_id WHERE t.refs <> coalesce(a.actual, 0)",
     "t.turn_id, t.refs"),
    ("blob_refs_wrong", "content_hash",
     f"FROM blobs b LEFT JOIN (SELECT content_hash, count(*) AS actual FROM turns x WHERE {_LIVE.format(t='x')} "
     "GROUP BY content_hash) a USING (content_hash) WHERE b.refs <> coalesce(a.actual, 0)",
     "encode(b.content_hash, 'hex'), b.refs"),
    ("reachable_turn_marked", "turn_id",
     "FROM gc_turns g JOIN turns t USING (turn_id) WHERE g.marked AND t.refs > 0", "g.turn_id, t.refs"),
    ("index_count_wrong", "client_tag",
     "FROM (SELECT client_tag, count(*) AS actual FROM contexts WHERE client_tag IS NOT NULL GROUP BY client_tag) a "
     "FULL JOIN tag_counts k USING (client_tag) WHERE coalesce(k.contexts, 0) <> coalesce(a.actual, 0)",
     "encode(client_tag, 'hex'), coalesce(k.contexts, 0)"),
    ("index_count_wrong", "context_id",
     "FROM contexts p LEFT JOIN (SELECT parent_context_id, count(*) AS actual FROM contexts "
     "WHERE parent_context_id IS NOT NULL GROUP BY parent_context_id) a ON a.parent_context_id = p.context_id "
     "WHERE p.children <> coalesce(a.actual, 0)",
     "p.context_id, p.children"),
)


async def check_database(conn: Any, decode: Callable[[bytes], Awaitable[bytes]]) -> dict[str, Any]:
    """A report: ``ok``, ``problems`` (at most 100 listed), ``problem_count`` and ``counts``."""
    report = Report()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        blob_count = 0
        async for row in conn.cursor("SELECT content_hash, stored FROM blobs", prefetch=64):
            blob_count += 1
            digest = bytes(row[0])
            try:
                raw = await decode(bytes(row[1]))
            except CxdbError as exc:
                report.problem("blob_undecodable", content_hash=digest.hex(), reason=exc.message)
                continue
            if content_hash(raw) != digest:
                report.problem("blob_hash_mismatch", content_hash=digest.hex())
        for kind, name, where, columns in _FINDINGS:
            found = await conn.fetchval(f"SELECT count(*) {where}")
            rows = await conn.fetch(f"SELECT {columns} {where} LIMIT {MAX_PROBLEMS}")
            for row in rows:
                report.problem(kind, **{name: str(row[0]) if name != "client_tag" else row[0],
                                        "recorded": _plain(row[1])})
            report.count += found - len(rows)
        turns, contexts = await conn.fetchrow("SELECT (SELECT count(*) FROM turns), (SELECT count(*) FROM contexts)")
        counters = await conn.fetchrow("SELECT blobs, turns, contexts FROM counters WHERE id = 1")
        for name, recorded, actual in zip(("blobs", "turns", "contexts"), counters, (blob_count, turns, contexts),
                                          strict=True):
            if recorded != actual:
                report.problem("counter_wrong", counter=name, recorded=recorded, actual=actual)
    return report.result({"blobs": blob_count, "turns": turns, "contexts": contexts})


def _plain(value: Any) -> Any:
    return bytes(value).hex() if isinstance(value, bytes | memoryview) else value
