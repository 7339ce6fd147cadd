"""Writing a store, or some of its contexts, as an export (docs/export-format.md).

Contexts go in id order, each as a group: its ``context`` line, the turns it reaches (from its head
and its replaced heads) that no earlier group carried, each after its parent, then its replaced heads,
its idempotency keys and its ``head``. An importer writes it in one pass.

Memory: a page of turns at a time (up to 8,192 turn records of one chain), and one bit per turn id for
the turns written so far (the set is closed under parents, so a chain's walk stops at the first turn
written before).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .. import __version__
from ..errors import Corrupt, NotFound
from ..model import ContextRecord, TurnRecord
from ..storage import Backend, HeadEntry
from . import format as fmt
from .ledger import store_id

__all__ = ["Selection", "export"]

PAGE = 512
"""Turns read per round trip."""
_HELD = 8192
"""A chain's new turns, up to this many, are kept from the walk that found them; more are read again."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which contexts to export: those named, or those whose tag starts with a prefix, or (neither) all."""

    context_ids: Sequence[int] = ()
    tag_prefix: str | None = None

    def describe(self) -> dict[str, object]:
        return {"context_ids": [str(c) for c in self.context_ids] or None, "tag_prefix": self.tag_prefix}


class _Marks:
    """A set of turn ids as one bit each, in pages of 65,536 ids made as ids fall in them (so sparse ids,
    kept from another store by an import, cost only the pages they use)."""

    _PAGE_BITS = 16

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def __contains__(self, turn_id: int) -> bool:
        page = self._pages.get(turn_id >> self._PAGE_BITS)
        offset = turn_id & 0xFFFF
        return page is not None and bool(page[offset >> 3] & (1 << (offset & 7)))

    def add(self, turn_id: int) -> None:
        page = self._pages.get(turn_id >> self._PAGE_BITS)
        if page is None:
            page = self._pages[turn_id >> self._PAGE_BITS] = bytearray(1 << (self._PAGE_BITS - 3))
        offset = turn_id & 0xFFFF
        page[offset >> 3] |= 1 << (offset & 7)


async def export(backend: Backend, selection: Selection = Selection(), now_ms: int = 0) -> AsyncIterator[bytes]:
    """The lines of an export of ``selection``; NotFound when a context named does not exist."""
    for context_id in selection.context_ids:
        await backend.get_context(context_id)  # refused before the first line
    everything = not selection.context_ids and selection.tag_prefix is None
    turns = (await backend.stats()).turns if everything else None
    yield fmt.header_line(__version__, await store_id(backend), now_ms, turns, selection.describe())
    bundles = await backend.bundles()
    for bundle in bundles:
        yield fmt.bundle_line(bundle.bundle_id, bundle.published_at_ms, bundle.body)
    marks = _Marks()
    counts = [0, 0]
    async for context in _contexts(backend, selection):
        counts[0] += 1
        async for line in _group(backend, context, marks, counts):
            yield line
    yield fmt.end_line(len(bundles), counts[0], counts[1])


async def _contexts(backend: Backend, selection: Selection) -> AsyncIterator[ContextRecord]:
    if selection.context_ids:
        for context_id in sorted(set(selection.context_ids)):
            yield await backend.get_context(context_id)
        return
    after = 0
    while True:
        ids = await backend.context_ids(after, PAGE)
        if not ids:
            return
        for context_id in ids:
            try:
                context = await backend.get_context(context_id)
            except NotFound:
                continue
            tag = context.client_tag
            if selection.tag_prefix is None or (tag is not None and tag.startswith(selection.tag_prefix)):
                yield context
        after = ids[-1]


async def _group(backend: Backend, context: ContextRecord, marks: _Marks, counts: list[int]) -> AsyncIterator[bytes]:
    """A context's lines. Writes may go on meanwhile: what is written names only turns the group (or an
    earlier one) carries, so it imports as the context stood when its record was read."""
    context_id = context.context_id
    yield fmt.context_line(context)
    history = [entry async for entry in _history(backend, context_id)]
    heads = [(context.head_turn_id, context.head_depth)] + [(e.head_turn_id, e.head_depth) for e in history]
    for head, depth in heads:
        async for line in _chain(backend, head, depth, marks, counts):
            yield line
    for entry in history:
        if entry.head_turn_id in marks and entry.replaced_by_turn_id in marks:
            yield fmt.replaced_line(context_id, entry)
    after: str | None = None
    while True:
        keys = await backend.idempotency_keys(context_id, after, PAGE)
        for key in keys:
            if key.turn_id in marks:
                yield fmt.key_line(context_id, key)
        if len(keys) < PAGE:
            break
        after = keys[-1].key
    yield fmt.head_line(context)


async def _history(backend: Backend, context_id: int) -> AsyncIterator[HeadEntry]:
    before: int | None = None
    while True:
        entries, before = await backend.head_history(context_id, PAGE, before)
        for entry in entries:
            yield entry
        if before is None:
            return


async def _chain(backend: Backend, head: int, depth: int, marks: _Marks, counts: list[int]) -> AsyncIterator[bytes]:
    """The turns of the chain ending at ``head`` not written yet, oldest first, as lines."""
    if not head or head in marks:
        return
    held: list[TurnRecord] = []  # newest first
    low = 0  # the depth of the newest turn written before, on this chain
    start: int | None = head
    while start:
        page, _ = await backend.chain(start, PAGE)
        done = False
        for turn in reversed(page):
            if turn.turn_id in marks:
                low, done = turn.depth, True
                break
            if len(held) < _HELD:
                held.append(turn)
        if done or not page:
            break
        start = page[0].parent_turn_id
    if depth - low <= len(held):
        held.reverse()
        for offset in range(0, len(held), PAGE):
            for line in await _lines(backend, held[offset:offset + PAGE], marks, counts):
                yield line
        return
    while low < depth:  # too many to hold: read them again, oldest first, a page at a time
        top = min(low + PAGE, depth)
        page, _ = await backend.chain(await backend.ancestor(head, top), top - low)
        for line in await _lines(backend, page, marks, counts):
            yield line
        low = top


async def _lines(backend: Backend, turns: list[TurnRecord], marks: _Marks, counts: list[int]) -> list[bytes]:
    """One page of turns as lines, with their payloads."""
    payloads = await backend.payloads(turn.content_hash for turn in turns)
    lines: list[bytes] = []
    for turn in turns:
        payload = payloads.get(turn.content_hash)
        if payload is None:
            raise Corrupt("a turn's payload is missing from the store",
                          {"turn_id": str(turn.turn_id), "content_hash": turn.content_hash.hex()})
        lines.append(fmt.turn_line(turn, payload))
        marks.add(turn.turn_id)
    counts[1] += len(turns)
    return lines
