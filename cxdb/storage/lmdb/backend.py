"""The LMDB store behind the storage interface.

:class:`~cxdb.storage.lmdb.store.Store` does the work. Its reads are short read transactions
that do not wait on anything, so here they run at once, inside the coroutines the interface asks for.
Its writes were coroutines already: they resolve once their group commit is durable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ...model import ContextRecord, StoreStats, TurnId, TurnRecord
from ..base import (
    AppendResult,
    CommitObserver,
    Event,
    HeadEntry,
    KeyEntry,
    NewTurn,
    PageStart,
    Pending,
    Reclaimed,
    Restored,
    RestoredContext,
    RestoredTurn,
    StoredBundle,
)
from .store import Store

__all__ = ["LmdbBackend"]


class LmdbBackend:
    """A :class:`~cxdb.storage.base.Backend` over one LMDB environment."""

    def __init__(self, path: Path, map_size: int, max_batch: int, on_commit: CommitObserver | None = None,
                 **options: Any) -> None:
        self.store = Store(path, map_size=map_size, max_batch=max_batch, on_commit=on_commit, **options)

    async def start(self) -> None:
        """Nothing to do: the environment opened with the object."""

    def watch(self, wake: Callable[[], None]) -> bool:
        """No signal between workers: reading the newest sequence of a local LMDB is a few microseconds,
        so their streams poll it."""
        return False

    async def create_context(self, base_turn_id: int = 0, client_tag: str | None = None,
                             provenance: dict[str, Any] | None = None) -> ContextRecord:
        return await self.store.create_context(base_turn_id, client_tag, provenance)

    async def append(self, context_id: int, type_id: str, type_version: int, payload: bytes,
                     parent_turn_id: int | None = None, idempotency_key: str | None = None,
                     registry_generation: int | None = None, fingerprint: bytes | None = None,
                     expected_head_turn_id: int | None = None) -> AppendResult:
        return await self.store.append(context_id, type_id, type_version, payload, parent_turn_id, idempotency_key,
                                       registry_generation, fingerprint, expected_head_turn_id)

    async def append_batch(self, context_id: int, turns: Sequence[NewTurn], parent_turn_id: int | None = None,
                           expected_head_turn_id: int | None = None,
                           registry_generation: int | None = None) -> list[AppendResult]:
        return await self.store.append_batch(context_id, turns, parent_turn_id, expected_head_turn_id,
                                             registry_generation)

    async def publish_bundle(self, bundle_id: str, body: bytes, generation: int,
                             published_at_ms: int | None = None) -> tuple[StoredBundle, bool]:
        return await self.store.publish_bundle(bundle_id, body, generation, published_at_ms)

    async def context_ids(self, after: int, limit: int) -> list[int]:
        return self.store.context_ids(after, limit)

    async def idempotency_keys(self, context_id: int, after: str | None, limit: int) -> list[KeyEntry]:
        return self.store.idempotency_keys(context_id, after, limit)

    async def id_bounds(self) -> tuple[int, int]:
        return self.store.id_bounds()

    async def reserve_ids(self, contexts: int, turns: int) -> tuple[int, int]:
        return await self.store.reserve_ids(contexts, turns)

    async def restore(self, turns: Sequence[RestoredTurn], contexts: Sequence[RestoredContext]) -> Restored:
        return await self.store.restore(turns, contexts)

    async def get_context(self, context_id: int) -> ContextRecord:
        return self.store.get_context(context_id)

    async def list_contexts(self, limit: int, tag: str | None = None, prefix: str | None = None,
                            before: tuple[int, int] | None = None) -> tuple[list[ContextRecord], int]:
        return self.store.list_contexts(limit, tag, prefix, before)

    async def children(self, context_id: int, recursive: bool = False,
                       limit: int = 256) -> tuple[list[ContextRecord], int]:
        return self.store.children(context_id, recursive, limit)

    async def child_ids(self, context_id: int, limit: int) -> tuple[list[int], int]:
        return self.store.child_ids(context_id, limit)

    async def page_start(self, context_id: int, before_turn_id: int | None = None) -> PageStart:
        return self.store.page_start(context_id, before_turn_id)

    async def chain(self, start: int, limit: int) -> tuple[list[TurnRecord], TurnId | None]:
        return self.store.chain(start, limit)

    async def head_history(self, context_id: int, limit: int,
                           before: int | None = None) -> tuple[list[HeadEntry], int | None]:
        return self.store.head_history(context_id, limit, before)

    async def turn_in_context(self, context_id: int, turn_id: int) -> TurnRecord | None:
        return self.store.turn_in_context(context_id, turn_id)

    async def turn(self, turn_id: int) -> TurnRecord | None:
        return self.store.turn(turn_id)

    async def ancestor(self, turn_id: int, depth: int) -> int:
        return self.store.ancestor(turn_id, depth)

    def note_cursor(self, context: ContextRecord, cursor: int, parent: int) -> None:
        self.store.note_cursor(context, cursor, parent)

    async def payloads(self, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        return self.store.payloads(hashes)

    async def get_blob(self, digest: bytes) -> bytes:
        return self.store.get_blob(digest)

    async def stats(self) -> StoreStats:
        return self.store.stats()

    async def figures(self) -> dict[str, int]:
        return self.store.figures()

    async def bundles(self, after: int = 0) -> list[StoredBundle]:
        return self.store.bundles(after)

    async def get_bundle(self, bundle_id: str) -> StoredBundle:
        return self.store.get_bundle(bundle_id)

    async def registry_generation(self) -> int:
        return self.store.registry_generation()

    async def events(self, after: int, limit: int) -> list[Event]:
        return self.store.events(after, limit)

    async def event_bounds(self) -> tuple[int, int]:
        return self.store.event_bounds()

    async def prune_events(self, before_ms: int, limit: int) -> int:
        return await self.store.prune_events(before_ms, limit)

    async def delete_context(self, context_id: int, recursive: bool = False) -> list[int]:
        return await self.store.delete_context(context_id, recursive)

    async def reclaim(self, budget: int) -> Reclaimed:
        return await self.store.reclaim(budget)

    async def expire(self, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
        return await self.store.expire(history_before_ms, keys_before_ms, budget)

    async def pending(self) -> Pending:
        return self.store.pending()

    async def auth_entry(self, name: str) -> bytes | None:
        return self.store.auth_entry(name)

    async def auth_entries(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        return self.store.auth_entries(prefix, limit)

    async def put_auth_entry(self, name: str, value: bytes, replace: bool) -> bytes:
        return await self.store.put_auth_entry(name, value, replace)

    async def delete_auth_entry(self, name: str) -> None:
        await self.store.delete_auth_entry(name)

    async def check(self) -> dict[str, Any]:
        return self.store.check()

    async def close(self) -> None:
        self.store.close()
