"""Following one context: its turns as they are appended, and a rebase when its head moves away.

A :class:`Follower` remembers the last turn it sent. Each :meth:`Follower.step` reads the head, and
sends the turns from the last one sent down the head's chain, a bounded batch at a time, oldest
first. When the head no longer descends from the last turn sent (an append with an explicit parent
moved it elsewhere), it first sends a rebase naming the newest turn both chains share, and goes on
from there. What a follower has received therefore always equals a fresh page of the context.

It learns of new turns from the event log (:class:`~cxdb.service.events.Changes`): it reads the head
again only when an event names its context, so idle followers cost a wake-up and nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson

from ..model import TurnRecord
from ..storage import Backend
from .events import Changes

__all__ = ["FOLLOW_BATCH", "FollowItem", "Follower", "Render"]

FOLLOW_BATCH = 64
"""Turns one step sends at most."""
READ_BATCH = 256

Render = Callable[[list[TurnRecord], int], Awaitable[list[bytes]]]
"""Renders turns (with the registry at a generation) exactly as a page does."""


@dataclass(frozen=True, slots=True)
class FollowItem:
    """One message of a follow stream: ``turn`` (its id and rendered JSON) or ``rebase``."""

    event: str
    turn_id: int
    data: bytes


class Follower:
    """One follow stream's position: the last turn sent (id and depth), and the event log's."""

    def __init__(self, store: Backend, changes: Changes, render: Render, budget: int, context_id: int,
                 last: tuple[int, int], position: int) -> None:
        self._store = store
        self._changes = changes
        self._render = render
        self._budget = budget
        self.context_id = context_id
        self.last_turn_id, self.last_depth = last
        self.position = position

    async def step(self) -> list[FollowItem]:
        """What to send now to bring the follower to the head: a rebase, or up to
        :data:`FOLLOW_BATCH` turns (fewer when their payloads pass the byte budget); nothing when it
        is there."""
        context, head, generation = await self._store.page_start(self.context_id)
        depth = context.head_depth
        if head == self.last_turn_id:
            return []
        gap = depth - self.last_depth
        if gap > 0:
            top = head if gap <= FOLLOW_BATCH else await self._store.ancestor(head, self.last_depth + FOLLOW_BATCH)
            chain, _ = await self._store.chain(top, min(gap, FOLLOW_BATCH))
            if chain and chain[0].parent_turn_id == self.last_turn_id:
                chain = _within(chain, self._budget)
                rendered = await self._render(chain, generation)
                self.last_turn_id, self.last_depth = chain[-1].turn_id, chain[-1].depth
                return [FollowItem("turn", turn.turn_id, text) for turn, text in zip(chain, rendered, strict=True)]
        common, common_depth = await self._common(head, min(depth, self.last_depth))
        self.last_turn_id, self.last_depth = common, common_depth
        return [FollowItem("rebase", common, orjson.dumps({"common_ancestor_turn_id": str(common)}))]

    async def _common(self, head: int, top: int) -> tuple[int, int]:
        """The newest turn on both the head's chain and the last sent turn's, and its depth (0, 0
        when they share none): a binary search over depth, O(log² depth) reads."""
        low, high, found = 0, top, 0
        while low < high:
            middle = (low + high + 1) // 2
            ours = await self._store.ancestor(self.last_turn_id, middle)
            if ours and ours == await self._store.ancestor(head, middle):
                low, found = middle, ours
            else:
                high = middle - 1
        return found, low

    async def batches(self, heartbeat: float) -> AsyncIterator[list[FollowItem]]:
        """What to send, batch by batch, forever; an empty batch after ``heartbeat`` seconds without
        a change (or when the changes are interrupted: the caller checks whether to stop)."""
        wanted = frozenset((self.context_id,))
        while True:
            items = await self.step()
            if items:
                yield items
                continue
            while True:  # caught up: wait for an event of this context
                found, self.position, more = await self._changes.read(self.position, READ_BATCH, wanted)
                if found:
                    break
                if more:
                    continue
                if not await self._changes.wait(self.position, heartbeat):
                    yield []


def _within(chain: list[TurnRecord], budget: int) -> list[TurnRecord]:
    """The oldest turns of ``chain`` whose payloads fit in ``budget`` bytes; at least one."""
    used = 0
    for index, turn in enumerate(chain):
        used += turn.uncompressed_len
        if used > budget and index:
            return chain[:index]
    return chain
