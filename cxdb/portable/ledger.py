"""Which ids an import gives the records of another store, kept in the store itself.

A store has an id of its own (record ``store:id``, made by the first process that needs it). For each
source store it imported from, the record ``import:<source store id>`` says how that source's ids map:
``same`` (kept as they were: the first import went into an empty store, or with ``--preserve-ids``), or
by blocks of 65,536 ids, each source block to a block of fresh ids reserved for it, recorded as
``import:<source>:<contexts|turns>:<block>``. A block is reserved and recorded before any record is
written with it, so importing the same source again maps every id the same way: what was imported
already is found, and nothing is added twice. Memory and records grow with the number of blocks, not
of ids.
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

    def __init__(self, backend: Backend, source: str, same: bool) -> None:
        self._backend = backend
        self._source = source
        self.same = same
        self._blocks: dict[str, dict[int, int]] = {"contexts": {}, "turns": {}}
        """The blocks this import used: source block -> the first id of the block reserved for it."""

    @classmethod
    async def load(cls, backend: Backend, source: str, preserve: bool | None) -> IdMap:
        """The map of ``source``: ids kept when it is this store itself; else as an earlier import recorded
        it, unless ``preserve`` (True or False) says otherwise; else kept when the store is empty; else
        fresh blocks."""
        name = f"import:{source}"
        stored = await backend.auth_entry(name)
        recorded: bool | None = orjson.loads(stored)["same"] if stored is not None else None
        same = recorded
        if source == await store_id(backend):
            same = True  # this store's own export: its ids are its own
        elif preserve is not None:
            same = preserve
        elif same is None:
            stats = await backend.stats()
            same = stats.contexts == 0 and stats.turns == 0
        if recorded != same:
            await backend.put_auth_entry(name, orjson.dumps({"same": same}), replace=True)
        return cls(backend, source, same)

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
            base = await self._block(kind, block)
            self._blocks[kind][block] = base
        return base + source_id % BLOCK

    async def _block(self, kind: str, block: int) -> int:
        """The first id of the block reserved for a source block: as recorded, or reserved and recorded
        now, before any record is written with it. Two imports of one source at once agree: the record
        is put only if absent, and the one that loses takes the winner's block (its own stays unused)."""
        name = f"import:{self._source}:{kind}:{block}"
        stored = await self._backend.auth_entry(name)
        if stored is None:
            first_context, first_turn = await self._backend.reserve_ids(BLOCK if kind == "contexts" else 0,
                                                                        BLOCK if kind == "turns" else 0)
            mine = first_context if kind == "contexts" else first_turn
            stored = await self._backend.put_auth_entry(name, str(mine).encode(), replace=False)
        return int(stored)

    def ranges(self) -> dict[str, Any]:
        """The blocks this import used, as ranges: the first source id, the first id here, how many."""
        if self.same:
            return {"same": True}
        return {"same": False, **{kind: [{"from": str(block * BLOCK), "to": str(base), "count": BLOCK}
                                         for block, base in sorted(blocks.items())]
                                  for kind, blocks in self._blocks.items()}}
