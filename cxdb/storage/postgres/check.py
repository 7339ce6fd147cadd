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

# (kind, the query listing its cases as (id column name, id, extra), the query counting them)
_FINDINGS = (
    ("turn_parent_missing", "turn_id",
     "FROM turns t LEFT JOIN turns p ON p.turn_id = t.parent_turn_id WHERE t.parent_turn_id <> 0 AND p.turn_id IS NULL",
     "t.turn_id, t.parent_turn_id"),
    ("turn_depth_wrong", "turn_id",
     "FROM turns t LEFT JOIN turns p ON p.turn_id = t.parent_turn_id "
     "WHERE (t.parent_turn_id = 0 AND t.depth <> 1) OR (p.turn_id IS NOT NULL AND p.depth <> t.depth - 1)",
     "t.turn_id, t.depth"),
    ("turn_blob_missing", "turn_id",
     "FROM turns t LEFT JOIN blobs b ON b.content_hash = t.content_hash WHERE b.content_hash IS NULL",
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
     "LEFT JOIN turns t ON t.turn_id = h.head_turn_id "
     "WHERE c.context_id IS NULL OR t.turn_id IS NULL OR t.depth <> h.head_depth",
     "h.context_id, h.replaced_by_turn_id"),
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
