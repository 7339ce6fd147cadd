"""The store: one LMDB environment, its writer thread and the operations on it.

Writes are coroutines that resolve only after their group-commit batch is
durable. Reads are short read transactions run on the caller's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ...cache import LruCache
from ...codec import BlobCodec, UnknownDictionary
from ...errors import Conflict, NotFound
from ...model import (
    ContextRecord,
    Page,
    StoreStats,
    TurnId,
    TurnRecord,
)
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
    RegistryMoved,
    Restored,
    RestoredContext,
    RestoredTurn,
    StoredBundle,
)
from ..dictionaries import DictionaryTrainer
from ..rules import check_tag, missing_turn, prepare
from . import (
    appending,
    auth,
    blobs,
    bundles,
    contexts,
    dictionaries,
    events,
    heads,
    idempotency,
    lifecycle,
    refs,
    turns,
)
from . import restore as restoring
from .counters import read_all, read_one
from .env import Environment
from .writer import WriteContext, Writer

__all__ = ["AppendResult", "PageStart", "RegistryMoved", "Store"]


class Store:
    """A cxdb data directory, open for reading and writing.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path | str, *, map_size: int = 1 << 33, max_batch: int = 512,
                 clock: Callable[[], float] = time.time, codec: BlobCodec | None = None,
                 dictionary_after: int = 2000, dictionary_size: int = 64 * 1024, readonly: bool = False,
                 on_commit: CommitObserver | None = None, open_lock: bool = True) -> None:
        """Open the store at ``path``, creating it unless ``readonly``.

        ``readonly`` opens an existing store for reading only (``check``, ``backup``), and works on a
        read-only copy; writes then raise StoreClosed.
        """
        self.path = Path(path)
        self._codec = codec or BlobCodec()
        self._env = Environment(self.path, map_size=map_size, readonly=readonly, open_lock=open_lock)
        self._dbs = self._env.dbs
        if self._env.upgrade:  # the event log and head history of older formats start empty
            upgrade = self._env.upgrade

            def build(txn: Any) -> None:
                if upgrade == 1:
                    contexts.build_indexes(txn, self._dbs)
                lifecycle.build(txn, self._dbs)

            self._env.upgraded(build)
        with self._env.read() as txn:
            current = read_one(txn, self._dbs.meta, "dict_current")
            for dict_id, data in dictionaries.load_all(txn, self._dbs.meta):
                self._codec.add_dictionary(dict_id, data, use=dict_id == current)
        self._writer = Writer(self._env, max_batch=max_batch, clock=clock, on_commit=on_commit)
        if readonly:
            self._writer.close()  # no thread; every write is refused as on a closed store
        # Cursors known to be on a context's chain: (context, head, cursor) -> the cursor's parent.
        self._cursors: LruCache[tuple[int, int, int], int] = LruCache(65_536)
        self._trainer = DictionaryTrainer(dictionaries.keeper(self._codec, self._writer.submit),
                                          threshold=dictionary_after, size=dictionary_size)

    # -- lifetime -------------------------------------------------------

    def close(self) -> None:
        """Drain the writer, then close the environment. Safe to call twice."""
        self._trainer.close()
        self._writer.close()
        self._env.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def current_dictionary(self) -> int:
        """The id of the compression dictionary new blobs use; 0 until one has been trained."""
        return self._codec.current_dictionary

    @property
    def writer_stats(self) -> tuple[int, int]:
        """(batches committed, operations committed) since open."""
        return self._writer.batches, self._writer.ops

    # -- writes ---------------------------------------------------------

    async def create_context(self, base_turn_id: int = 0, client_tag: str | None = None,
                             provenance: dict[str, Any] | None = None) -> ContextRecord:
        """A new context whose head is ``base_turn_id`` (0: empty). NotFound for a missing base."""
        check_tag(client_tag)

        def op(w: WriteContext) -> ContextRecord:
            if not base_turn_id:
                created = contexts.create(w, 0, 0, 0, None, 0, client_tag, provenance)
            else:
                found = turns.get(w.txn, w.dbs.turns, base_turn_id)
                if found is None or not refs.turn_count(w.txn, w.dbs, base_turn_id):
                    raise missing_turn(base_turn_id)  # absent, or unreachable and awaiting reclamation
                refs.add_turn(w, base_turn_id, 1)
                base = found[0]
                origin = contexts.get(w.txn, w.dbs, base.context_id, with_meta=False)
                root = origin.lineage.root_context_id if origin is not None else None
                created = contexts.create(w, base.turn_id, base.depth, base.context_id, root, base.turn_id,
                                          client_tag, provenance)
            events.record(w, "context_created", created.context_id, created.head_turn_id, created.head_depth)
            return created

        return await self._writer.run(op)

    async def append(self, context_id: int, type_id: str, type_version: int, payload: bytes,
                     parent_turn_id: int | None = None, idempotency_key: str | None = None,
                     registry_generation: int | None = None, fingerprint: bytes | None = None,
                     expected_head_turn_id: int | None = None) -> AppendResult:
        """Append a turn; the context's head moves to it (only from ``expected_head_turn_id``, if given).

        NotFound for a missing context, Conflict for a missing parent or an
        idempotency key reused with another request. With ``registry_generation``,
        RegistryMoved when bundles were published since (by any process): the
        payload was encoded against a registry that is no longer current.

        ``fingerprint`` identifies the request for its idempotency key (by default
        the type, version, payload and parent): a repeat of the key with another
        fingerprint is a Conflict.
        """
        turn = NewTurn(type_id, type_version, payload, idempotency_key, fingerprint)
        results = await self.append_batch(context_id, [turn], parent_turn_id, expected_head_turn_id,
                                          registry_generation)
        return results[0]

    async def append_batch(self, context_id: int, new_turns: Sequence[NewTurn], parent_turn_id: int | None = None,
                           expected_head_turn_id: int | None = None,
                           registry_generation: int | None = None) -> list[AppendResult]:
        """Append ``new_turns`` as a chain in one write transaction, or none of them (the writer keeps
        none of an operation's writes when it raises). See :meth:`cxdb.storage.base.Backend.append_batch`."""
        prepared = prepare(new_turns, parent_turn_id)
        op = appending.operation(context_id, prepared, parent_turn_id, expected_head_turn_id, registry_generation,
                                 self._codec, self._trainer.observe)
        return appending.results(context_id, prepared, await self._writer.run(op))

    async def publish_bundle(self, bundle_id: str, body: bytes, generation: int,
                             published_at_ms: int | None = None) -> tuple[StoredBundle, bool]:
        """Store a bundle atomically (as published at ``published_at_ms``, by default now); True when it is new.

        ``body`` is canonical JSON, already checked by the caller against the registry of
        ``generation`` (the number of bundles then published). The same body under the same id is a
        no-op; another body under that id is a Conflict; RegistryMoved when another bundle was
        published since ``generation``, so the caller checks again. The check itself stays out of
        the writer: this operation costs two lookups whatever the bundle holds.
        """

        def op(w: WriteContext) -> tuple[StoredBundle, bool]:
            existing = bundles.get(w.txn, w.dbs, bundle_id)
            if existing is not None:
                if existing.body != body:
                    raise Conflict("a different bundle is stored under this id", {"bundle_id": bundle_id})
                return existing, False
            if w.counters.get("bundles") != generation:
                raise RegistryMoved("the registry changed", {"generation": w.counters.get("bundles")})
            stored = bundles.put(w, bundle_id, body, published_at_ms)
            events.record(w, "registry_published", 0, stored.sequence)
            return stored, True

        return await self._writer.run(op)

    async def reserve_ids(self, context_count: int, turn_count: int) -> tuple[int, int]:
        """Allocate ranges of ids no write will use; the first of each."""

        def op(w: WriteContext) -> tuple[int, int]:
            first = w.counters.get("next_context") + 1, w.counters.get("next_turn") + 1
            w.counters.add("next_context", context_count)
            w.counters.add("next_turn", turn_count)
            return first

        return await self._writer.run(op)

    async def restore(self, items: Sequence[RestoredTurn], restored: Sequence[RestoredContext]) -> Restored:
        """See :meth:`cxdb.storage.base.Backend.restore`: one operation of the writer."""
        return await self._writer.run(
            lambda w: restoring.restore(w, self._codec, self._trainer.observe, items, restored))

    async def delete_context(self, context_id: int, recursive: bool = False) -> list[int]:
        """See :meth:`cxdb.storage.base.Backend.delete_context`: one operation of the writer."""
        return await self._writer.run(lambda w: lifecycle.delete(w, context_id, recursive))

    async def reclaim(self, budget: int) -> Reclaimed:
        return await self._writer.run(lambda w: lifecycle.reclaim(w, budget))

    async def expire(self, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
        return await self._writer.run(lambda w: lifecycle.expire(w, history_before_ms, keys_before_ms, budget))

    def pending(self) -> Pending:
        with self._env.read() as txn:
            return lifecycle.pending(txn, self._dbs.meta)

    # -- reads ----------------------------------------------------------

    def context_ids(self, after: int, limit: int) -> list[int]:
        with self._env.read() as txn:
            return contexts.ids_after(txn, self._dbs, after, limit)

    def idempotency_keys(self, context_id: int, after: str | None, limit: int) -> list[KeyEntry]:
        with self._env.read() as txn:
            return idempotency.entries(txn, self._dbs.idem, context_id, after, limit)

    def id_bounds(self) -> tuple[int, int]:
        with self._env.read() as txn:
            return read_one(txn, self._dbs.meta, "next_context"), read_one(txn, self._dbs.meta, "next_turn")

    def get_context(self, context_id: int) -> ContextRecord:
        """The context; NotFound if it does not exist."""
        with self._env.read() as txn:
            return contexts.require(txn, self._dbs, context_id)

    def list_contexts(self, limit: int, tag: str | None = None, prefix: str | None = None,
                      before: tuple[int, int] | None = None) -> tuple[list[ContextRecord], int]:
        """Up to ``limit`` contexts, newest activity first (below the (activity, id) ``before``), and
        how many match in all; O(limit), or with a tag ``prefix``, O(contexts under it)."""
        with self._env.read() as txn:
            if prefix is not None and (tag is None or not tag.startswith(prefix)):
                if tag is not None:
                    return [], 0
                ids, total = contexts.ids_by_prefix(txn, self._dbs, prefix, limit, before)
                return [contexts.require(txn, self._dbs, cid) for cid in ids], total
            if tag is None:
                total = read_one(txn, self._dbs.meta, "contexts")
                found: list[ContextRecord] = []
                for context_id in contexts.ids_by_activity(txn, self._dbs, before):
                    if len(found) >= limit:
                        break
                    found.append(contexts.require(txn, self._dbs, context_id))
                return found, total
            ids = contexts.ids_by_tag(txn, self._dbs, tag, limit, before)
            return ([contexts.require(txn, self._dbs, cid) for cid in ids],
                    contexts.tag_count(txn, self._dbs, tag))

    def auth_entry(self, name: str) -> bytes | None:
        with self._env.read() as txn:
            return auth.get(txn, self._dbs.meta, name)

    def auth_entries(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        with self._env.read() as txn:
            return auth.scan(txn, self._dbs.meta, prefix, limit)

    async def put_auth_entry(self, name: str, value: bytes, replace: bool) -> bytes:
        return await self._writer.run(lambda w: auth.put(w, name, value, replace))

    async def delete_auth_entry(self, name: str) -> None:
        await self._writer.run(lambda w: auth.delete(w, name))

    def children(self, context_id: int, recursive: bool = False,
                 limit: int = 256) -> tuple[list[ContextRecord], int]:
        """Child contexts (breadth first when recursive), up to ``limit``, and how many there are.

        Direct children are counted from a counter; a recursive count walks the index keys of the
        subtree, and only the listed contexts are loaded.
        """
        with self._env.read() as txn:
            contexts.require(txn, self._dbs, context_id, with_meta=False)
            if not recursive:
                ids = contexts.child_ids(txn, self._dbs, context_id, limit)
                total = contexts.child_count(txn, self._dbs, context_id)
            else:
                ids = []
                total = 0
                frontier = [context_id]
                while frontier:
                    level = [child for parent in frontier for child in contexts.child_ids(txn, self._dbs, parent)]
                    total += len(level)
                    ids.extend(level[:max(0, limit - len(ids))])
                    frontier = level
            return [contexts.require(txn, self._dbs, cid) for cid in ids], total

    def child_ids(self, context_id: int, limit: int) -> tuple[list[int], int]:
        """The first ``limit`` children of a context, oldest first, and how many it has."""
        with self._env.read() as txn:
            return (contexts.child_ids(txn, self._dbs, context_id, limit),
                    contexts.child_count(txn, self._dbs, context_id))

    def get_turn(self, turn_id: int) -> TurnRecord:
        with self._env.read() as txn:
            found = turns.get(txn, self._dbs.turns, turn_id)
        if found is None:
            raise missing_turn(turn_id)
        return found[0]

    def page(self, context_id: int, limit: int, before_turn_id: int | None = None) -> Page:
        """Up to ``limit`` turns of the context's chain ending at its head, or just before
        ``before_turn_id``, oldest first. NotFound when the cursor is not on the chain.
        """
        context, start, _ = self.page_start(context_id, before_turn_id)
        chain, next_before = self.chain(start, limit)
        if next_before is not None:
            self.note_cursor(context, next_before, chain[0].parent_turn_id)
        return Page(context, chain, next_before)

    def note_cursor(self, context: ContextRecord, cursor: int, parent: int) -> None:
        """Remember that ``cursor`` (whose parent is ``parent``) is on the chain of the context's head.

        The next page's cursor is usually the one the last page handed out, so
        checking it then costs a lookup instead of a walk down the chain.
        """
        self._cursors.put((context.context_id, context.head_turn_id, cursor), parent)

    def page_start(self, context_id: int, before_turn_id: int | None = None) -> PageStart:
        """The context and the newest turn of its page (the head, or the parent of a cursor on its
        chain), and the registry generation, all read in one snapshot."""
        with self._env.read() as txn:
            context = contexts.require(txn, self._dbs, context_id, with_meta=False)
            generation = read_one(txn, self._dbs.meta, "bundles")
            if not before_turn_id:
                return PageStart(context, context.head_turn_id, generation)
            key = (context_id, context.head_turn_id, before_turn_id)
            start = self._cursors.get(key)
            if start is None:
                start = self._cursor_start(txn, context, before_turn_id)
                self._cursors.put(key, start)
            return PageStart(context, start, generation)

    def chain(self, start: int, limit: int) -> tuple[list[TurnRecord], TurnId | None]:
        """Up to ``limit`` turns ending at ``start``, oldest first, and the cursor to older ones.

        The chain below a turn never changes, so the answer for (start, limit) is final.
        """
        with self._env.read() as txn:
            found = list(turns.walk(txn, self._dbs.turns, start, limit))
        found.reverse()
        more = bool(found) and found[0].parent_turn_id != 0
        return found, found[0].turn_id if more else None

    def turn(self, turn_id: int) -> TurnRecord | None:
        with self._env.read() as txn:
            found = turns.get(txn, self._dbs.turns, turn_id)
        return found[0] if found is not None else None

    def ancestor(self, turn_id: int, depth: int) -> int:
        with self._env.read() as txn:
            return turns.ancestor_at_depth(txn, self._dbs.turns, turn_id, depth)

    def _cursor_start(self, txn: Any, context: ContextRecord, before_turn_id: int) -> int:
        found = turns.get(txn, self._dbs.turns, before_turn_id)
        if found is None or not self._in_context(txn, context, found[0]):
            raise NotFound(f"Turn {before_turn_id} is not on context {context.context_id}",
                           {"before_turn_id": str(before_turn_id), "context_id": str(context.context_id)})
        return found[0].parent_turn_id

    def _in_context(self, txn: Any, context: ContextRecord, turn: TurnRecord) -> bool:
        """Whether ``turn`` is on the chain of the context's head or of one of its replaced heads:
        those chains hold the turns appended to it and the chain below its fork point."""
        if turn.context_id == context.context_id:
            return True
        tops = [context.head_turn_id, context.lineage.fork_turn_id or 0]
        # A replaced head's chain may pass through another context's turns (an append naming a parent
        # there): those are the context's too. O(replaced heads deep enough), each O(log depth).
        tops.extend(head for head, depth in heads.heads_of(txn, self._dbs, context.context_id) if depth >= turn.depth)
        return any(top and turns.ancestor_at_depth(txn, self._dbs.turns, top, turn.depth) == turn.turn_id
                   for top in tops)

    def turn_in_context(self, context_id: int, turn_id: int) -> TurnRecord | None:
        """The turn, when it is on the chain of the context's head or of a replaced head; None
        otherwise. NotFound for a missing context."""
        with self._env.read() as txn:
            context = contexts.require(txn, self._dbs, context_id)
            found = turns.get(txn, self._dbs.turns, turn_id)
            return found[0] if found is not None and self._in_context(txn, context, found[0]) else None

    def head_history(self, context_id: int, limit: int, before: int | None) -> tuple[list[HeadEntry], int | None]:
        with self._env.read() as txn:
            contexts.require(txn, self._dbs, context_id, with_meta=False)
            return heads.list_entries(txn, self._dbs, context_id, limit, before)

    def payloads(self, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        """The uncompressed bytes of each blob named, in one read transaction."""
        found: dict[bytes, bytes] = {}
        with self._env.read() as txn:
            for digest in set(hashes):
                value = blobs.get_stored(txn, self._dbs.blobs, digest)
                if value is not None:
                    found[digest] = self._decode(txn, value)
        return found

    def _decode(self, txn: Any, stored: bytes) -> bytes:
        try:
            return self._codec.decode(stored)
        except UnknownDictionary as exc:  # trained by another process sharing this store
            data = dictionaries.load_one(txn, self._dbs.meta, exc.dict_id)
            if data is None:
                raise
            self._codec.add_dictionary(exc.dict_id, data)
            return self._codec.decode(stored)

    def blob_info(self, digest: bytes) -> tuple[int, int, int]:
        """(compression, uncompressed length, stored length) of a blob; NotFound if absent."""
        with self._env.read() as txn:
            value = blobs.get_stored(txn, self._dbs.blobs, digest)
        if value is None:
            raise NotFound("Blob not found", {"content_hash": digest.hex()})
        compression, length = BlobCodec.header(value)
        return compression, length, len(value)

    def get_blob(self, digest: bytes) -> bytes:
        """A blob's uncompressed bytes; NotFound if absent."""
        found = self.payloads([digest])
        if digest not in found:
            raise NotFound("Blob not found", {"content_hash": digest.hex()})
        return found[digest]

    def stats(self) -> StoreStats:
        """Counters, all O(1)."""
        with self._env.read() as txn:
            values = read_all(txn, self._dbs.meta)
        return StoreStats(values["contexts"], values["turns"], values["blobs"], self._env.used_bytes(),
                          values["blob_stored"], values["blob_raw"], values["dedup_hits"],
                          values["dedup_misses"])

    def figures(self) -> dict[str, int]:
        """The store's counters and sizes, all O(1): what the metrics report."""
        with self._env.read() as txn:
            values = read_all(txn, self._dbs.meta)
        return {"appends": values["turns"], "contexts": values["contexts"], "blobs": values["blobs"],
                "payload_bytes": values["blob_raw"], "stored_bytes": values["blob_stored"],
                "dedup_hits": values["dedup_hits"], "dedup_misses": values["dedup_misses"],
                "bundles": values["bundles"], "map_size": self._env.map_size(), "used_bytes": self._env.used_bytes()}

    def bundles(self, after: int = 0) -> list[StoredBundle]:
        """Every registry bundle published after sequence ``after``, in publish order."""
        with self._env.read() as txn:
            return bundles.all_in_order(txn, self._dbs, after)

    def get_bundle(self, bundle_id: str) -> StoredBundle:
        with self._env.read() as txn:
            found = bundles.get(txn, self._dbs, bundle_id)
        if found is None:
            raise NotFound(f"Bundle {bundle_id} not found", {"bundle_id": bundle_id})
        return found

    def registry_generation(self) -> int:
        """How many bundles have been published; changes whenever the registry does."""
        with self._env.read() as txn:
            return read_one(txn, self._dbs.meta, "bundles")

    def events(self, after: int, limit: int) -> list[Event]:
        """Up to ``limit`` events after sequence ``after``, in order, with what they name."""
        with self._env.read() as txn:
            return events.read(txn, self._dbs, after, limit)

    def event_bounds(self) -> tuple[int, int]:
        """(oldest, newest) retained sequence: (0, newest) when the log is empty."""
        with self._env.read() as txn:
            return events.bounds(txn, self._dbs, read_one(txn, self._dbs.meta, "next_event"))

    async def prune_events(self, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events recorded before ``before_ms``, in one write."""
        return await self._writer.run(lambda w: events.prune(w, before_ms, limit))

    def check(self) -> dict[str, Any]:
        """Verify the whole store; see :mod:`cxdb.storage.check`."""
        from .check import check_store

        with self._env.read() as txn:
            return check_store(txn, self._dbs, lambda stored: self._decode(txn, stored))

    def backup(self, dest: Path | str) -> None:
        """Write a consistent, compacted copy of the live store into a new directory."""
        self._env.copy(Path(dest))


