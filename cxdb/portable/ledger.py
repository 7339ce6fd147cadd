"""Which ids an import gives the records of another store, kept in the store itself.

A store has an id of its own (record ``store:id``, made by the first process that needs it). For each
source store it imported from, the record ``import:<source store id>`` says how that source's ids map:
``same`` (kept as they were: the first import went into an empty store, or with ``--preserve-ids``), or
by blocks of 65,536 ids, each source block to a block of fresh ids reserved for it. A block is reserved
and recorded before any record is written with it, so importing the same source again maps every id
the same way: what was imported already is found, and nothing is added twice. Memory and the record
grow with the number of blocks, not of ids.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..storage import Backend

__all__ = ["BLOCK", "IdMap", "store_id"]

BLOCK = 1 << 16
_STORE_ID = "store:id"


async def store_id(backend: Backend) -> str:
    """The store's own id (made, race-free, on first use)."""
    stored = await backend.auth_entry(_STORE_ID)
    if stored is None:
        stored = await backend.put_auth_entry(_STORE_ID, uuid.uuid4().hex.encode(), replace=False)
    return stored.decode()


class IdMap:
    """Source ids to this store's ids, for one source."""

    def __init__(self, backend: Backend, source: str, same: bool, blocks: dict[str, dict[int, int]]) -> None:
        self._backend = backend
        self._name = f"import:{source}"
        self.same = same
        self._blocks = blocks

    @classmethod
    async def load(cls, backend: Backend, source: str, preserve: bool | None) -> IdMap:
        """The map of ``source``: ids kept when it is this store itself; else as an earlier import recorded
        it, unless ``preserve`` (True or False) says otherwise; else kept when the store is empty; else
        fresh blocks."""
        name = f"import:{source}"
        stored = await backend.auth_entry(name)
        recorded: dict[str, Any] = orjson.loads(stored) if stored is not None else {}
        same = recorded.get("same")
        if source == await store_id(backend):
            same = True  # this store's own export: its ids are its own
        elif preserve is not None:
            same = preserve
        elif same is None:
            stats = await backend.stats()
            same = stats.contexts == 0 and stats.turns == 0
        blocks = {kind: {int(k): v for k, v in recorded.get(kind, {}).items()} for kind in ("contexts", "turns")}
        found = cls(backend, source, bool(same), blocks)
        if stored is None or recorded.get("same") != same:
            await found._save()
        return found

    async def context(self, source_id: int) -> int:
        return await self._map("contexts", source_id)

    async def turn(self, source_id: int) -> int:
        return await self._map("turns", source_id)

    async def _map(self, kind: str, source_id: int) -> int:
        if self.same or not source_id:
            return source_id
        block = source_id // BLOCK
        base = self._blocks[kind].get(block)
        if base is None:
            first_context, first_turn = await self._backend.reserve_ids(BLOCK if kind == "contexts" else 0,
                                                                        BLOCK if kind == "turns" else 0)
            base = first_context if kind == "contexts" else first_turn
            self._blocks[kind][block] = base
            await self._save()  # before any record is written with it
        return base + source_id % BLOCK

    def ranges(self) -> dict[str, Any]:
        """The map as ranges: for each block, the first source id, the first id here and how many."""
        if self.same:
            return {"same": True}
        return {"same": False, **{kind: [{"from": str(block * BLOCK), "to": str(base), "count": BLOCK}
                                         for block, base in sorted(blocks.items())]
                                  for kind, blocks in self._blocks.items()}}

    async def _save(self) -> None:
        value = {"same": self.same, **{kind: {str(k): v for k, v in blocks.items()}
                                       for kind, blocks in self._blocks.items()}}
        await self._backend.put_auth_entry(self._name, orjson.dumps(value), replace=True)
