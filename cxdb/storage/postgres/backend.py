"""The PostgreSQL backend: many stateless gateways on one database.

Appends go through the :class:`~cxdb.storage.postgres.writer.AppendWriter`; every other write is
one short transaction; every read is one statement (one snapshot, one round trip), except a cursor
check, which adds one recursive query of O(log depth) rows. Payloads are framed by the same
:class:`~cxdb.codec.BlobCodec` as on LMDB, and its trained dictionaries live in the database, so
every gateway can read what any other wrote.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from ...cache import LruCache
from ...codec import BlobCodec, UnknownDictionary
from ...errors import Conflict, NotFound
from ...model import ContextId, ContextRecord, Lineage, StoreStats, TurnId, TurnRecord
from ..base import (
    EVENT_KINDS,
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
from ..rules import check_tag, missing_context, missing_turn, prepare
from . import lifecycle, schema
from . import restore as restoring
from .batch import PendingItem
from .check import check_database
from .database import Database
from .listener import Listener
from .listing import CHILDREN, SUBTREE, listing
from .reads import ContextReads
from .rows import ANCESTOR, CONTEXT, I64_MAX, TURN, context, fits, text, turn
from .writer import AppendWriter, PendingAppend

__all__ = ["PostgresBackend"]

# Recursive walks take one primary-key lookup per step: LATERAL ... LIMIT 1 keeps the planner from
# joining the recursion to a scan of turns, which it picks when its statistics lag behind the table.
_CHAIN = f"""
WITH RECURSIVE chain AS (
    SELECT {TURN}, 1 AS n FROM turns WHERE turn_id = $1
    UNION ALL
    SELECT t.*, c.n + 1 FROM chain c CROSS JOIN LATERAL (
        SELECT {TURN} FROM turns WHERE turn_id = c.parent_turn_id LIMIT 1) t
    WHERE c.parent_turn_id <> 0 AND c.n < $2)
SELECT {TURN} FROM chain ORDER BY n DESC"""
# The ancestor of the head at the cursor's depth, by jump pointers (rules.jump_step): O(log depth) rows.
_CURSOR = """
WITH RECURSIVE target AS (SELECT parent_turn_id, depth FROM turns WHERE turn_id = $2),
walk(turn_id, depth, parent_turn_id, jump_turn_id, jump_depth) AS (
    SELECT turn_id, depth, parent_turn_id, jump_turn_id, jump_depth FROM turns WHERE turn_id = $1
    UNION ALL
    SELECT t.* FROM walk w CROSS JOIN target g CROSS JOIN LATERAL (
        SELECT turn_id, depth, parent_turn_id, jump_turn_id, jump_depth FROM turns WHERE turn_id = CASE
            WHEN w.jump_turn_id <> 0 AND w.jump_depth >= g.depth THEN w.jump_turn_id ELSE w.parent_turn_id END
        LIMIT 1) t
    WHERE w.depth > g.depth)
SELECT (SELECT parent_turn_id FROM target),
       (SELECT w.turn_id FROM walk w CROSS JOIN target g WHERE w.depth = g.depth)"""
_SIZE = "SELECT coalesce(sum(pg_total_relation_size(to_regclass(name))), 0)::bigint FROM unnest($1::text[]) AS name"
_COUNTERS = ("turns", "contexts", "blobs", "blob_stored", "blob_raw", "dedup_hits", "dedup_misses", "bundles")
_EVENTS = f"""
SELECT e.sequence, e.kind, e.created_at_ms, e.a, e.b,
       {", ".join("c." + name for name in CONTEXT.split(", "))},
       {", ".join("t." + name for name in TURN.split(", "))},
       g.bundle_id, e.context_id
FROM events e
LEFT JOIN contexts c ON e.kind = 1 AND c.context_id = e.context_id
LEFT JOIN turns t ON e.kind = 2 AND t.turn_id = e.a
LEFT JOIN bundles g ON e.kind = 3 AND g.sequence = e.a
WHERE e.sequence > $1 ORDER BY e.sequence LIMIT $2"""


class PostgresBackend:
    """A :class:`~cxdb.storage.base.Backend` over one PostgreSQL database."""

    def __init__(self, url: str, pool_size: int, max_batch: int, on_commit: CommitObserver | None = None,
                 clock: Callable[[], float] = time.time, codec: BlobCodec | None = None,
                 dictionary_after: int = 2000, dictionary_size: int = 64 * 1024, create: bool = True) -> None:
        self._db = Database(url, pool_size)
        self._clock = clock
        self._create = create
        self._codec = codec or BlobCodec()
        self._trainer = DictionaryTrainer(self._keep_dictionary, threshold=dictionary_after, size=dictionary_size)
        self._writer = AppendWriter(self._db, self._codec, self._trainer.observe, max_batch, on_commit, clock)
        self._cursors: LruCache[tuple[int, int, int], int] = LruCache(65_536)
        self._contexts = ContextReads(self._db)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: Listener | None = None

    # -- lifetime -------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> bool:
        """LISTEN for the other gateways' commits (each write transaction NOTIFYs), where the engine has
        LISTEN/NOTIFY (CockroachDB, say, does not: False, and the caller polls)."""
        if not self._db.notifies:
            return False
        self._listener = Listener(self._db.listen_connection, wake)
        self._listener.start()
        return True

    async def migrate(self) -> str:
        """Connect, and create the schema when the database has none or bring an older one up to date:
        ``"created"``, ``"upgraded"`` or ``"current"``. Refused (FormatMismatch) when the database holds
        a schema version this build does not know."""
        self._loop = asyncio.get_running_loop()
        await self._db.open()
        return await self._db.read(lambda conn: schema.ensure(conn, True))

    async def start(self) -> None:
        """Connect, create the schema when the database has none (and ``create``), check its version,
        and load the compression dictionaries."""
        self._loop = asyncio.get_running_loop()
        await self._db.open()
        await self._db.read(lambda conn: schema.ensure(conn, self._create))
        rows, current = await self._db.read(self._dictionaries)
        for dict_id, data in rows:
            self._codec.add_dictionary(dict_id, bytes(data), use=dict_id == current)
        await self._db.probe_notify()

    @staticmethod
    async def _dictionaries(conn: Any) -> tuple[list[Any], int]:
        return (await conn.fetch("SELECT dict_id, data FROM dictionaries ORDER BY dict_id"),
                await conn.fetchval("SELECT dict_current FROM counters WHERE id = 1"))

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._writer.close()
        self._trainer.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._db.close()

    # -- writes ---------------------------------------------------------

    async def create_context(self, base_turn_id: int = 0, client_tag: str | None = None,
                             provenance: dict[str, Any] | None = None) -> ContextRecord:
        check_tag(client_tag)
        tag = client_tag.encode() if client_tag is not None else None
        meta = orjson.dumps(provenance) if provenance is not None else None
        now = int(self._clock() * 1000)

        async def op(conn: Any) -> ContextRecord:
            head, depth, parent, root, fork = 0, 0, None, None, None
            if base_turn_id:
                row = None
                if fits(base_turn_id):
                    row = await conn.fetchrow(  # a turn awaiting reclamation (refs 0) is no base any more
                        "WITH t AS (UPDATE turns SET refs = refs + 1 WHERE turn_id = $1 AND refs > 0 "
                        "RETURNING depth, context_id) SELECT t.depth, t.context_id, c.root_context_id FROM t "
                        "LEFT JOIN contexts c ON c.context_id = t.context_id", base_turn_id)
                if row is None:
                    raise missing_turn(base_turn_id)
                head, fork = base_turn_id, base_turn_id
                depth, parent, root = row
                await conn.execute("UPDATE contexts SET children = children + 1 WHERE context_id = $1", parent)
            if tag is not None:
                await conn.execute("INSERT INTO tag_counts (client_tag, contexts) VALUES ($1, 1) ON CONFLICT "
                                   "(client_tag) DO UPDATE SET contexts = tag_counts.contexts + 1", tag)
            context_id, event = await conn.fetchrow(
                "UPDATE counters SET next_context = next_context + 1, contexts = contexts + 1, "
                "next_event = next_event + 1 WHERE id = 1 RETURNING next_context, next_event")
            root_id = context_id if root is None else root
            await conn.execute(
                "WITH c AS (INSERT INTO contexts (context_id, head_turn_id, head_depth, created_at_ms, "
                "last_activity_ms, parent_context_id, root_context_id, fork_turn_id, client_tag, provenance) "
                "VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)) "
                "INSERT INTO events (sequence, kind, created_at_ms, context_id, a, b) VALUES ($10, 1, $4, $1, $2, $3)",
                context_id, head, depth, now, parent, root_id, fork, tag, meta, event)
            lineage = Lineage(ContextId(parent) if parent else None, ContextId(root_id),
                              TurnId(fork) if fork else None)
            return ContextRecord(ContextId(context_id), TurnId(head), depth, now, now, client_tag,
                                 orjson.loads(meta) if meta is not None else None, lineage)

        return await self._db.write(op)

    async def append(self, context_id: int, type_id: str, type_version: int, payload: bytes,
                     parent_turn_id: int | None = None, idempotency_key: str | None = None,
                     registry_generation: int | None = None, fingerprint: bytes | None = None,
                     expected_head_turn_id: int | None = None) -> AppendResult:
        turn = NewTurn(type_id, type_version, payload, idempotency_key, fingerprint)
        results = await self.append_batch(context_id, [turn], parent_turn_id, expected_head_turn_id,
                                          registry_generation)
        return results[0]

    async def append_batch(self, context_id: int, turns: Sequence[NewTurn], parent_turn_id: int | None = None,
                           expected_head_turn_id: int | None = None,
                           registry_generation: int | None = None) -> list[AppendResult]:
        items = [PendingItem(new.type_id, new.type_version, new.payload, digest,
                             new.idempotency_key.encode() if new.idempotency_key is not None else None, request)
                 for new, digest, request in prepare(turns, parent_turn_id)]
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        return await self._writer.append(PendingAppend(context_id, items, parent_turn_id, registry_generation, future,
                                                       expected_head_turn_id))

    async def publish_bundle(self, bundle_id: str, body: bytes, generation: int,
                             published_at_ms: int | None = None) -> tuple[StoredBundle, bool]:
        now = int(self._clock() * 1000) if published_at_ms is None else published_at_ms
        raw_id = bundle_id.encode()

        async def op(conn: Any) -> tuple[StoredBundle, bool]:
            published = await conn.fetchval("SELECT bundles FROM counters WHERE id = 1 FOR UPDATE")
            row = await conn.fetchrow("SELECT sequence, published_at_ms, body FROM bundles WHERE bundle_id = $1",
                                      raw_id)
            if row is not None:
                if bytes(row[2]) != body:
                    raise Conflict("a different bundle is stored under this id", {"bundle_id": bundle_id})
                return StoredBundle(bundle_id, row[0], row[1], bytes(row[2])), False
            if published != generation:
                raise RegistryMoved("the registry changed", {"generation": published})
            await conn.execute(
                "WITH k AS (UPDATE counters SET bundles = bundles + 1, next_event = next_event + 1 WHERE id = 1 "
                "RETURNING next_event), b AS (INSERT INTO bundles (sequence, bundle_id, published_at_ms, body) "
                "VALUES ($1, $2, $3, $4)) INSERT INTO events (sequence, kind, created_at_ms, context_id, a, b) "
                "SELECT next_event, 3, $3, 0, $1, 0 FROM k", published + 1, raw_id, now, body)
            return StoredBundle(bundle_id, published + 1, now, body), True

        return await self._db.write(op)

    def _keep_dictionary(self, data: bytes) -> None:
        """Called by the trainer on its thread: store the dictionary from the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._store_dictionary, data)

    def _store_dictionary(self, data: bytes) -> None:
        async def store() -> None:
            async def op(conn: Any) -> int:
                return await conn.fetchval(  # type: ignore[no-any-return]
                    "WITH d AS (UPDATE counters SET dicts = dicts + 1, dict_current = dicts + 1 WHERE id = 1 "
                    "RETURNING dicts) INSERT INTO dictionaries (dict_id, data) SELECT dicts, $1 FROM d "
                    "RETURNING dict_id", data)

            try:
                dict_id = await self._db.write(op)
            except Exception:  # the dictionary is simply not kept; blobs stay as they are
                return
            self._codec.add_dictionary(dict_id, data, use=True)

        task = asyncio.ensure_future(store())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reads ----------------------------------------------------------

    async def get_context(self, context_id: int) -> ContextRecord:
        row = await self._contexts.get(context_id) if fits(context_id) else None
        if row is None:
            raise missing_context(context_id)
        return context(row)

    async def list_contexts(self, limit: int, tag: str | None = None, prefix: str | None = None,
                            before: tuple[int, int] | None = None) -> tuple[list[ContextRecord], int]:
        if prefix is not None and tag is not None and not tag.startswith(prefix):
            return [], 0
        query, args = listing(limit, tag, prefix, before)
        rows = await self._db.read(lambda conn: conn.fetch(query, *args))
        return [context(row, 1) for row in rows if row[1] is not None], rows[0][0] if rows else 0

    async def children(self, context_id: int, recursive: bool = False,
                       limit: int = 256) -> tuple[list[ContextRecord], int]:
        if not fits(context_id):
            raise missing_context(context_id)
        if not recursive:
            rows = await self._db.read(lambda conn: conn.fetch(CHILDREN, context_id, limit))
            if not rows:
                raise missing_context(context_id)
            return [context(row, 1) for row in rows if row[1] is not None], rows[0][0]

        async def subtree(conn: Any) -> tuple[list[Any], list[int]]:
            if await conn.fetchval("SELECT 1 FROM contexts WHERE context_id = $1", context_id) is None:
                raise missing_context(context_id)
            ids = [row[0] for row in await conn.fetch(SUBTREE, context_id)]
            rows = await conn.fetch(f"SELECT {CONTEXT} FROM contexts WHERE context_id = ANY($1::bigint[])",
                                    ids[:limit])
            return rows, ids

        rows, ids = await self._db.read(subtree)
        by_id = {row[0]: context(row) for row in rows}
        return [by_id[cid] for cid in ids[:limit] if cid in by_id], len(ids)

    async def child_ids(self, context_id: int, limit: int) -> tuple[list[int], int]:
        if not fits(context_id):
            return [], 0
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT p.children, c.context_id FROM contexts p LEFT JOIN LATERAL (SELECT context_id FROM contexts "
            "WHERE parent_context_id = p.context_id ORDER BY context_id LIMIT $2) c ON true "
            "WHERE p.context_id = $1", context_id, limit))
        return [row[1] for row in rows if row[1] is not None], rows[0][0] if rows else 0

    async def page_start(self, context_id: int, before_turn_id: int | None = None) -> PageStart:
        row = await self._contexts.get(context_id) if fits(context_id) else None
        if row is None:
            raise missing_context(context_id)
        found, generation = context(row), row[10]
        if not before_turn_id:
            return PageStart(found, found.head_turn_id, generation)
        key = (context_id, found.head_turn_id, before_turn_id)
        start = self._cursors.get(key)
        if start is None:
            start = await self._cursor_start(found, before_turn_id)
            self._cursors.put(key, start)
        return PageStart(found, start, generation)

    async def _cursor_start(self, found: ContextRecord, before_turn_id: int) -> int:
        missing = NotFound(f"Turn {before_turn_id} is not on context {found.context_id}",
                           {"before_turn_id": str(before_turn_id), "context_id": str(found.context_id)})
        if not fits(before_turn_id) or not found.head_turn_id:
            raise missing
        parent, on_chain = await self._db.read(
            lambda conn: conn.fetchrow(_CURSOR, found.head_turn_id, before_turn_id))
        if parent is not None and on_chain == before_turn_id:
            return parent  # type: ignore[no-any-return]
        elsewhere = await self._in_context(found, before_turn_id)  # on a replaced head's chain?
        if elsewhere is None:
            raise missing
        return elsewhere.parent_turn_id

    async def _in_context(self, found: ContextRecord, turn_id: int) -> TurnRecord | None:
        """The turn when it is on the chain of the context's head or of a replaced head: those chains
        hold the turns appended to it and the chain below its fork point."""
        record = await self.turn(turn_id)
        if record is None:
            return None
        if record.context_id == found.context_id:
            return record
        tops = [found.head_turn_id, found.lineage.fork_turn_id or 0]
        # A replaced head's chain may pass through another context's turns (an append naming a parent
        # there): those are the context's too.
        tops.extend(row[0] for row in await self._db.read(lambda conn: conn.fetch(
            "SELECT head_turn_id FROM head_history WHERE context_id = $1 AND head_depth >= $2",
            found.context_id, record.depth)))
        for top in tops:
            if top and await self.ancestor(top, record.depth) == turn_id:
                return record
        return None

    async def turn_in_context(self, context_id: int, turn_id: int) -> TurnRecord | None:
        return await self._in_context(await self.get_context(context_id), turn_id)

    async def head_history(self, context_id: int, limit: int,
                           before: int | None = None) -> tuple[list[HeadEntry], int | None]:
        await self.get_context(context_id)
        if before is not None and not fits(before):
            before = None  # above every turn id: from the newest
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT head_turn_id, head_depth, replaced_by_turn_id, replaced_at_ms FROM head_history "
            "WHERE context_id = $1 AND replaced_by_turn_id < $2 ORDER BY replaced_by_turn_id DESC LIMIT $3",
            context_id, before if before is not None else I64_MAX, limit + 1))
        entries = [HeadEntry(*row) for row in rows[:limit]]
        return entries, entries[-1].replaced_by_turn_id if len(rows) > limit and entries else None

    def note_cursor(self, context: ContextRecord, cursor: int, parent: int) -> None:
        self._cursors.put((context.context_id, context.head_turn_id, cursor), parent)

    async def chain(self, start: int, limit: int) -> tuple[list[TurnRecord], TurnId | None]:
        if not start or limit <= 0 or not fits(start):
            return [], None
        rows = await self._db.read(lambda conn: conn.fetch(_CHAIN, start, limit))
        found = [turn(row) for row in rows]
        more = bool(found) and found[0].parent_turn_id != 0
        return found, found[0].turn_id if more else None

    async def turn(self, turn_id: int) -> TurnRecord | None:
        if not fits(turn_id):
            return None
        row = await self._db.read(lambda conn: conn.fetchrow(f"SELECT {TURN} FROM turns WHERE turn_id = $1", turn_id))
        return turn(row) if row is not None else None

    async def ancestor(self, turn_id: int, depth: int) -> int:
        if depth <= 0 or not fits(turn_id):
            return 0
        found = await self._db.read(lambda conn: conn.fetchval(ANCESTOR, turn_id, depth))
        return int(found or 0)

    async def payloads(self, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        wanted = list(set(hashes))
        if not wanted:
            return {}
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT content_hash, stored FROM blobs WHERE content_hash = ANY($1::bytea[])", wanted))
        return {bytes(row[0]): await self._decode(bytes(row[1])) for row in rows}

    async def _decode(self, stored: bytes) -> bytes:
        try:
            return self._codec.decode(stored)
        except UnknownDictionary as exc:  # trained by another gateway since this one started
            dict_id = exc.dict_id
            data = await self._db.read(lambda conn: conn.fetchval(
                "SELECT data FROM dictionaries WHERE dict_id = $1", dict_id))
            if data is None:
                raise
            self._codec.add_dictionary(exc.dict_id, bytes(data))
            return self._codec.decode(stored)

    async def get_blob(self, digest: bytes) -> bytes:
        found = await self.payloads([digest])
        if digest not in found:
            raise NotFound("Blob not found", {"content_hash": digest.hex()})
        return found[digest]

    async def _counters(self) -> tuple[dict[str, int], int]:
        async def read(conn: Any) -> tuple[dict[str, int], int]:
            row = await conn.fetchrow(f"SELECT {', '.join(_COUNTERS)} FROM counters WHERE id = 1")
            return dict(zip(_COUNTERS, row, strict=True)), await conn.fetchval(_SIZE, list(schema.TABLES))

        return await self._db.read(read)

    async def stats(self) -> StoreStats:
        values, size = await self._counters()
        return StoreStats(values["contexts"], values["turns"], values["blobs"], size, values["blob_stored"],
                          values["blob_raw"], values["dedup_hits"], values["dedup_misses"])

    async def figures(self) -> dict[str, int]:
        values, size = await self._counters()
        return {"appends": values["turns"], "contexts": values["contexts"], "blobs": values["blobs"],
                "payload_bytes": values["blob_raw"], "stored_bytes": values["blob_stored"],
                "dedup_hits": values["dedup_hits"], "dedup_misses": values["dedup_misses"],
                "bundles": values["bundles"], "map_size": 0, "used_bytes": size}

    async def bundles(self, after: int = 0) -> list[StoredBundle]:
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT bundle_id, sequence, published_at_ms, body FROM bundles WHERE sequence > $1 ORDER BY sequence",
            after))
        return [StoredBundle(bytes(row[0]).decode(), row[1], row[2], bytes(row[3])) for row in rows]

    async def get_bundle(self, bundle_id: str) -> StoredBundle:
        row = await self._db.read(lambda conn: conn.fetchrow(
            "SELECT sequence, published_at_ms, body FROM bundles WHERE bundle_id = $1", bundle_id.encode()))
        if row is None:
            raise NotFound(f"Bundle {bundle_id} not found", {"bundle_id": bundle_id})
        return StoredBundle(bundle_id, row[0], row[1], bytes(row[2]))

    async def registry_generation(self) -> int:
        return await self._db.read(
            lambda conn: conn.fetchval("SELECT bundles FROM counters WHERE id = 1"))

    async def events(self, after: int, limit: int) -> list[Event]:
        if limit <= 0 or not fits(after):
            return []
        rows = await self._db.read(lambda conn: conn.fetch(_EVENTS, after, limit))
        found = []
        for row in rows:
            kind = EVENT_KINDS[row[1] - 1]
            if kind == "context_created":
                found.append(Event(row[0], kind, row[2], context=context(row, 5) if row[5] is not None else None,
                                   head_turn_id=row[3], head_depth=row[4]))
            elif kind == "turn_appended":
                found.append(Event(row[0], kind, row[2], turn=turn(row, 15) if row[15] is not None else None))
            elif kind == "context_deleted":
                found.append(Event(row[0], kind, row[2], context_id=row[28], head_turn_id=row[3], head_depth=row[4]))
            else:
                found.append(Event(row[0], kind, row[2], bundle_id=text(row[27])))
        return found

    async def event_bounds(self) -> tuple[int, int]:
        row = await self._db.read(lambda conn: conn.fetchrow(
            "SELECT coalesce((SELECT min(sequence) FROM events), 0), next_event FROM counters WHERE id = 1"))
        return row[0], row[1]

    async def prune_events(self, before_ms: int, limit: int) -> int:
        async def op(conn: Any) -> int:
            # The retained log stays a suffix: delete the oldest events up to the first that is recent
            # enough, even if a later one carries an older time (gateways' clocks differ a little).
            rows = await conn.fetch("SELECT sequence, created_at_ms FROM events ORDER BY sequence LIMIT $1", limit)
            last = 0
            for sequence, created in rows:
                if created >= before_ms:
                    break
                last = sequence
            if not last:
                return 0
            status = await conn.execute("DELETE FROM events WHERE sequence <= $1", last)
            return int(status.split()[-1])

        return await self._db.write(op)

    async def context_ids(self, after: int, limit: int) -> list[int]:
        if after > I64_MAX or limit <= 0:
            return []
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT context_id FROM contexts WHERE context_id > $1 ORDER BY context_id LIMIT $2", after, limit))
        return [row[0] for row in rows]

    async def idempotency_keys(self, context_id: int, after: str | None, limit: int) -> list[KeyEntry]:
        if not fits(context_id) or limit <= 0:
            return []
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT idempotency_key, turn_id, created_at_ms, request FROM idempotency WHERE context_id = $1 "
            "AND ($2::bytea IS NULL OR idempotency_key > $2) ORDER BY idempotency_key LIMIT $3",
            context_id, after.encode() if after is not None else None, limit))
        return [KeyEntry(bytes(row[0]).decode(), row[1], row[2], bytes(row[3])) for row in rows]

    async def id_bounds(self) -> tuple[int, int]:
        row = await self._db.read(lambda conn: conn.fetchrow(
            "SELECT next_context, next_turn FROM counters WHERE id = 1"))
        return row[0], row[1]

    async def reserve_ids(self, contexts: int, turns: int) -> tuple[int, int]:
        row = await self._db.write(lambda conn: conn.fetchrow(
            "UPDATE counters SET next_context = next_context + $1, next_turn = next_turn + $2 WHERE id = 1 "
            "RETURNING next_context - $1 + 1, next_turn - $2 + 1", contexts, turns))
        return row[0], row[1]

    async def restore(self, turns: Sequence[RestoredTurn], contexts: Sequence[RestoredContext]) -> Restored:
        now = int(self._clock() * 1000)
        done, new_payloads = await self._db.write(lambda conn: restoring.restore(conn, self._codec, now, turns,
                                                                                   contexts))
        for payload in new_payloads:
            self._trainer.observe(payload)
        return done

    async def delete_context(self, context_id: int, recursive: bool = False) -> list[int]:
        now = int(self._clock() * 1000)
        return await self._db.write(lambda conn: lifecycle.delete(conn, context_id, recursive, now))

    async def reclaim(self, budget: int) -> Reclaimed:
        return await self._db.write(lambda conn: lifecycle.reclaim(conn, budget))

    async def expire(self, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
        return await self._db.write(lambda conn: lifecycle.expire(conn, history_before_ms, keys_before_ms, budget))

    async def pending(self) -> Pending:
        return await self._db.read(lifecycle.pending)

    async def auth_entry(self, name: str) -> bytes | None:
        value = await self._db.read(lambda conn: conn.fetchval(
            "SELECT value FROM auth_entries WHERE name = $1", name.encode()))
        return bytes(value) if value is not None else None

    async def auth_entries(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        low = prefix.encode()
        rows = await self._db.read(lambda conn: conn.fetch(
            "SELECT name, value FROM auth_entries WHERE name >= $1 AND name < $2 ORDER BY name LIMIT $3",
            low, low + b"\xff", limit))
        return [(bytes(row[0]).decode(), bytes(row[1])) for row in rows]

    async def put_auth_entry(self, name: str, value: bytes, replace: bool) -> bytes:
        conflict = "UPDATE SET value = excluded.value" if replace else "NOTHING"

        async def put(conn: Any) -> bytes:
            await conn.execute(f"INSERT INTO auth_entries (name, value) VALUES ($1, $2) "
                               f"ON CONFLICT (name) DO {conflict}", name.encode(), value)
            return bytes(await conn.fetchval("SELECT value FROM auth_entries WHERE name = $1", name.encode()))

        return await self._db.write(put)

    async def delete_auth_entry(self, name: str) -> None:
        await self._db.write(lambda conn: conn.execute("DELETE FROM auth_entries WHERE name = $1", name.encode()))

    async def check(self) -> dict[str, Any]:
        return await self._db.read(lambda conn: check_database(conn, self._decode))
