"""The SQL of context listings: newest activity first, all, by tag or under a tag prefix, a page at a
time; and a context's children and subtree."""

from __future__ import annotations

from typing import Any

from .rows import CONTEXT, I64_MAX

__all__ = ["CHILDREN", "SUBTREE", "listing"]

# Each listing with "<BELOW>" where a page's cursor goes: (last_activity_ms, context_id) below the last
# one a page ended at, a row comparison the (activity, id) indexes serve.
_LIST = f"""
SELECT k.contexts, c.* FROM counters k LEFT JOIN LATERAL (
    SELECT {CONTEXT} FROM contexts WHERE true<BELOW> ORDER BY last_activity_ms DESC, context_id DESC LIMIT $1) c
    ON true
WHERE k.id = 1"""
_LIST_TAG = f"""
SELECT coalesce((SELECT contexts FROM tag_counts WHERE client_tag = $2), 0), c.*
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
    SELECT {CONTEXT} FROM contexts WHERE client_tag = $2<BELOW>
    ORDER BY last_activity_ms DESC, context_id DESC LIMIT $1) c ON true"""
# A namespace: tags from the prefix up to the prefix followed by 0xff, a byte UTF-8 never holds.
_LIST_PREFIX = f"""
SELECT (SELECT count(*) FROM contexts WHERE client_tag >= $2 AND client_tag < $3), c.*
FROM (SELECT 1) AS one LEFT JOIN LATERAL (
    SELECT {CONTEXT} FROM contexts WHERE client_tag >= $2 AND client_tag < $3<BELOW>
    ORDER BY last_activity_ms DESC, context_id DESC LIMIT $1) c ON true"""


def _listing(query: str, args: tuple[Any, ...], before: tuple[int, int] | None) -> tuple[str, tuple[Any, ...]]:
    """The listing ``query`` with its arguments, and the page's cursor when there is one."""
    if before is None:
        return query.replace("<BELOW>", ""), args
    first = len(args) + 1
    below = f" AND (last_activity_ms, context_id) < (${first}::bigint, ${first + 1}::bigint)"
    return query.replace("<BELOW>", below), (*args, *(min(value, I64_MAX) for value in before))
CHILDREN = f"""
SELECT p.children, c.* FROM contexts p LEFT JOIN LATERAL (
    SELECT {CONTEXT} FROM contexts WHERE parent_context_id = p.context_id ORDER BY context_id LIMIT $2) c ON true
WHERE p.context_id = $1"""
SUBTREE = """
WITH RECURSIVE tree(context_id, path) AS (
    SELECT context_id, ARRAY[context_id] FROM contexts WHERE parent_context_id = $1
    UNION ALL
    SELECT c.context_id, t.path || c.context_id FROM tree t CROSS JOIN LATERAL (
        SELECT context_id FROM contexts WHERE parent_context_id = t.context_id OFFSET 0) c)
SELECT context_id FROM tree ORDER BY cardinality(path), path"""


def listing(limit: int, tag: str | None, prefix: str | None,
            before: tuple[int, int] | None) -> tuple[str, tuple[Any, ...]]:
    """The query and arguments of one page of contexts: those tagged ``tag``, else those whose tag
    starts with ``prefix``, else all; below the (activity, id) ``before`` when given."""
    if prefix is not None and (tag is None or not tag.startswith(prefix)):
        low = prefix.encode()
        return _listing(_LIST_PREFIX, (limit, low, low + b"\xff"), before)
    if tag is None:
        return _listing(_LIST, (limit,), before)
    return _listing(_LIST_TAG, (limit, tag.encode()), before)
