"""Checking a copy: the contexts of the source, found in the target with the same records and chains.

Ids may differ (a copy into a store that held data gets fresh ones): the target's import ledger says
how they map. Compared, for each context checked: tag, provenance, times, head depth, along the
whole chain of its head each turn's id, depth, type, content hash and time, and, where the ids are
the same, the newest typed page of 64 turns as the API serves it, byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..storage import Backend
from .ledger import IdMap, store_id

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["verify"]

_PAGE = 512


async def verify(origin: Service, copied: Service, full: bool = False, sample: int = 64) -> dict[str, Any]:
    """A report (``ok``, ``problems``, what was compared) of ``copied`` against ``origin``: every context
    with ``full``, else ``sample`` of them spread over the ids, and the totals either way."""
    source, target = origin.store, copied.store
    ids = await IdMap.load(target, await store_id(source), None)
    have, got = await source.stats(), await target.stats()
    problems: list[dict[str, Any]] = []
    if got.contexts < have.contexts or got.turns < have.turns:
        problems.append({"problem": "counts", "source": [have.contexts, have.turns],
                         "target": [got.contexts, got.turns]})
    step = 1 if full else max(1, have.contexts // max(1, sample))
    checked = turns = 0
    after = index = 0
    while True:
        page = await source.context_ids(after, _PAGE)
        if not page:
            break
        for context_id in page:
            index += 1
            if (index - 1) % step:
                continue
            checked += 1
            found = len(problems)
            turns += await _context(source, target, ids, context_id, problems)
            if ids.same and len(problems) == found and (await origin.page_json(context_id, limit=64)
                                                        != await copied.page_json(context_id, limit=64)):
                problems.append({"problem": "page_differs", "context_id": str(context_id)})
        after = page[-1]
    return {"ok": not problems, "problems": problems[:100], "contexts_checked": checked, "turns_checked": turns,
            "source": {"contexts": have.contexts, "turns": have.turns},
            "target": {"contexts": got.contexts, "turns": got.turns}}


async def _context(source: Backend, target: Backend, ids: IdMap, context_id: int,
                   problems: list[dict[str, Any]]) -> int:
    mine = await source.get_context(context_id)
    mapped = await ids.context(context_id)
    try:
        theirs = await target.get_context(mapped)
    except NotFound:
        problems.append({"problem": "context_missing", "context_id": str(context_id)})
        return 0
    fields = ("client_tag", "provenance", "created_at_ms", "last_activity_ms", "head_depth")
    if [getattr(mine, f) for f in fields] != [getattr(theirs, f) for f in fields] or (
            await ids.turn(mine.head_turn_id) != theirs.head_turn_id):
        problems.append({"problem": "context_differs", "context_id": str(context_id)})
        return 0
    compared = 0
    start, other = mine.head_turn_id, theirs.head_turn_id
    while start:
        left, _ = await source.chain(start, _PAGE)
        right, _ = await target.chain(other, _PAGE)
        for a, b in zip(left, right, strict=False):
            if (await ids.turn(a.turn_id), a.depth, a.type_id, a.type_version, a.content_hash, a.created_at_ms) != (
                    b.turn_id, b.depth, b.type_id, b.type_version, b.content_hash, b.created_at_ms):
                problems.append({"problem": "turn_differs", "context_id": str(context_id),
                                 "turn_id": str(a.turn_id)})
                return compared
        if len(left) != len(right):
            problems.append({"problem": "chain_differs", "context_id": str(context_id)})
            return compared
        compared += len(left)
        start, other = left[0].parent_turn_id, right[0].parent_turn_id
    return compared
