"""Appends on PostgreSQL: the appends waiting in one gateway, grouped into one transaction.

As the LMDB writer does, each gateway runs one batch at a time and queues the appends that arrive
meanwhile for the next, so the round trips and the commit's flush are shared by a whole batch. A
batch's transaction:

1. reads the registry generation, then locks the batch's contexts (``SELECT ... FOR UPDATE``, in
   id order): appends to one context serialize across every gateway, and a head moves by
   compare-and-set under that lock;
2. reads the idempotency records of the batch's keys, and the jump-pointer spines of the parents
   (O(log depth) rows each, one recursive query);
3. decides each append in order, in memory: an append may build on one earlier in the batch;
4. stores the new blobs (``INSERT ... ON CONFLICT DO NOTHING``: a blob another gateway stored
   meanwhile is a dedup hit), allocates the turn ids and adds the counters in one ``UPDATE`` of the
   counter row, then inserts the turns, moves the heads and records the idempotency keys;
5. commits, synchronously.

Lock order is the same everywhere (contexts by id, then the counter row), so two gateways never
deadlock; if the engine still reports one, or a serialization failure, the batch runs again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...codec import BlobCodec
from ...errors import Conflict, CxdbError, StoreClosed, StoreError
from ...model import ENCODING_MSGPACK, BlobHash, ContextId, TurnId, TurnRecord
from ..base import AppendResult, CommitObserver, RegistryMoved
from ..rules import child_jump
from .database import Database
from .rows import TURN, fits, missing_context, turn

__all__ = ["AppendWriter", "PendingAppend"]

log = logging.getLogger("cxdb.storage")
INLINE_ENCODE_BYTES = 64 * 1024
"""New payloads up to this many bytes in all are compressed on the event loop; more go to a thread."""
SPINE_HOPS = 192

_SPINE = f"""
WITH RECURSIVE spine(turn_id, depth, jump_turn_id, jump_depth, hops) AS (
    SELECT turn_id, depth, jump_turn_id, jump_depth, 0 FROM turns WHERE turn_id = ANY($1::bigint[])
    UNION ALL
    SELECT t.turn_id, t.depth, t.jump_turn_id, t.jump_depth, s.hops + 1
    FROM spine s JOIN turns t ON t.turn_id = s.jump_turn_id
    WHERE s.hops < {SPINE_HOPS})
SELECT DISTINCT turn_id, depth, jump_turn_id, jump_depth FROM spine"""
_IDEMPOTENCY = f"""
SELECT i.context_id, i.idempotency_key, i.request, i.turn_id, {", ".join("t." + c for c in TURN.split(", "))}
FROM idempotency i LEFT JOIN turns t ON t.turn_id = i.turn_id
WHERE (i.context_id, i.idempotency_key) IN (SELECT * FROM unnest($1::bigint[], $2::bytea[]))"""
_INSERT_TURNS = """
INSERT INTO turns (turn_id, parent_turn_id, depth, context_id, created_at_ms, jump_turn_id, jump_depth, type_id,
                   type_version, encoding, compression, uncompressed_len, content_hash)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::bytea[], $9::bigint[], $10::smallint[], $11::smallint[], $12::bigint[],
                     $13::bytea[])"""
_MOVE_HEADS = """
UPDATE contexts AS c SET head_turn_id = u.head, head_depth = u.depth, last_activity_ms = $5
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, old_head, head, depth)
WHERE c.context_id = u.id AND c.head_turn_id = u.old_head"""
_REMEMBER = """
INSERT INTO idempotency (context_id, idempotency_key, turn_id, created_at_ms, request)
SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bytea[])
ON CONFLICT (context_id, idempotency_key)
DO UPDATE SET turn_id = EXCLUDED.turn_id, created_at_ms = EXCLUDED.created_at_ms, request = EXCLUDED.request"""
_COUNT = """
UPDATE counters SET next_turn = next_turn + $1, turns = turns + $1, blobs = blobs + $2,
    blob_stored = blob_stored + $3, blob_raw = blob_raw + $4, dedup_hits = dedup_hits + $5,
    dedup_misses = dedup_misses + $2
WHERE id = 1 RETURNING next_turn, bundles"""


@dataclass(slots=True)
class PendingAppend:
    """One append waiting for its batch."""

    context_id: int
    type_id: str
    type_version: int
    payload: bytes
    digest: BlobHash
    parent_turn_id: int | None
    key: bytes | None
    request: bytes
    generation: int | None
    future: asyncio.Future[AppendResult]


@dataclass(slots=True)
class _Planned:
    """An append the batch will write; ``slot`` numbers it among them (its id is allocated later)."""

    index: int
    slot: int
    parent: int
    depth: int
    jump: int
    jump_depth: int


@dataclass(slots=True)
class _Repeat:
    """An append repeating the idempotency key of a planned one: a replay of its turn, or a Conflict."""

    plan: _Planned
    same: bool


class _RegistryRace(Exception):
    """A bundle was published between the batch's read of the generation and its counter update."""


class AppendWriter:
    """Groups the appends of one gateway into transactions, one batch at a time."""

    def __init__(self, db: Database, codec: BlobCodec, observe: Callable[[bytes], None], max_batch: int,
                 on_commit: CommitObserver | None = None, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._codec = codec
        self._observe = observe
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._clock = clock
        self._pending: deque[PendingAppend] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def append(self, op: PendingAppend) -> AppendResult:
        if self._closed:
            raise StoreClosed("the store is closed")
        self._pending.append(op)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cxdb-pg-writer")
        return await op.future

    async def close(self) -> None:
        """Finish every append already queued, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
                started = time.perf_counter()
                await self._commit(batch)
                if self._on_commit is not None:
                    self._on_commit(len(batch), time.perf_counter() - started, len(self._pending))
            if self._closed:
                return

    async def _commit(self, batch: list[PendingAppend]) -> None:
        try:
            for _ in range(3):
                try:
                    outcome, new_payloads = await self._db.write(lambda conn: self._apply(conn, batch))
                    break
                except _RegistryRace:
                    continue
            else:
                raise StoreError("the registry kept changing under a batch of appends")
        except CxdbError as exc:
            outcome, new_payloads = [exc] * len(batch), []
        except Exception:
            log.exception("a batch of %d appends failed", len(batch))
            outcome, new_payloads = [StoreError("the append failed")] * len(batch), []
        for op, result in zip(batch, outcome, strict=True):
            if op.future.done():  # its caller went away; the append stands
                continue
            if isinstance(result, AppendResult):
                op.future.set_result(result)
            else:
                op.future.set_exception(result)
        for payload in new_payloads:
            self._observe(payload)

    async def _apply(self, conn: Any, batch: list[PendingAppend]) -> tuple[list[AppendResult | CxdbError], list[bytes]]:
        now = int(self._clock() * 1000)
        generation = await conn.fetchval("SELECT bundles FROM counters WHERE id = 1")
        ids = sorted({op.context_id for op in batch if fits(op.context_id)})
        rows = await conn.fetch("SELECT context_id, head_turn_id, head_depth FROM contexts "
                                "WHERE context_id = ANY($1::bigint[]) ORDER BY context_id FOR UPDATE", ids)
        heads: dict[int, tuple[int, int]] = {row[0]: (row[1], row[2]) for row in rows}
        earlier = await self._earlier(conn, batch, heads)
        links = await self._spines(conn, batch, heads)

        outcome: list[AppendResult | CxdbError | _Planned | _Repeat | None] = [None] * len(batch)
        planned: list[_Planned] = []
        batch_keys: dict[tuple[int, bytes], _Planned] = {}
        moved: dict[int, tuple[int, int]] = {}  # context -> the head it had before this batch
        for index, op in enumerate(batch):
            if op.generation is not None and op.generation != generation:
                outcome[index] = RegistryMoved("the registry changed", {"generation": generation})
                continue
            if op.context_id not in heads:
                outcome[index] = missing_context(op.context_id)
                continue
            head, head_depth = heads[op.context_id]
            if op.key is not None:
                found = batch_keys.get((op.context_id, op.key))
                if found is not None:
                    outcome[index] = _Repeat(found, batch[found.index].request == op.request)
                    continue
                stored = earlier.get((op.context_id, op.key))
                if stored is not None:
                    request, turn_id, record = stored
                    if request != op.request:
                        outcome[index] = _key_conflict(op, turn_id)
                        continue
                    if record is not None:
                        outcome[index] = AppendResult(record, True)
                        continue
            parent = head if op.parent_turn_id is None else op.parent_turn_id
            parent_links = links.get(parent) if parent else None
            if parent and parent_links is None:
                outcome[index] = Conflict(f"Parent turn {parent} not found",
                                          {"parent_turn_id": str(parent), "context_id": str(op.context_id)})
                continue
            jump, jump_depth, depth = 0, 0, 1
            if parent_links is not None:
                parent_depth, parent_jump, parent_jump_depth = parent_links
                grand = links.get(parent_jump) if parent_jump else (0, 0, 0)
                if grand is None:  # the spine query reaches every jump target; a gap is damage
                    raise StoreError("a turn's jump target is missing", {"turn_id": str(parent_jump)})
                jump, jump_depth = child_jump(parent, parent_depth, parent_jump_depth, grand[1], grand[2])
                depth = parent_depth + 1
            plan = _Planned(index, len(planned) + 1, parent, depth, jump, jump_depth)
            planned.append(plan)
            outcome[index] = plan
            links[-plan.slot] = (depth, jump, jump_depth)  # a later append of the batch may build on it
            moved.setdefault(op.context_id, heads[op.context_id])
            heads[op.context_id] = (-plan.slot, depth)
            if op.key is not None:
                batch_keys[(op.context_id, op.key)] = plan
        if not planned:
            return [_final(result, batch[index], {}) for index, result in enumerate(outcome)], []
        return await self._write(conn, batch, planned, outcome, heads, moved, generation, now)

    async def _write(self, conn: Any, batch: list[PendingAppend], planned: list[_Planned],
                     outcome: list[Any], heads: dict[int, tuple[int, int]], moved: dict[int, tuple[int, int]],
                     generation: int, now: int) -> tuple[list[AppendResult | CxdbError], list[bytes]]:
        compression, new_payloads, stored_bytes = await self._store_blobs(conn, [batch[p.index] for p in planned])
        raw_bytes = sum(len(raw) for raw in new_payloads)
        last, bundles = await conn.fetchrow(_COUNT, len(planned), len(new_payloads), stored_bytes, raw_bytes,
                                            len(planned) - len(new_payloads))
        if bundles != generation and any(batch[p.index].generation is not None for p in planned):
            raise _RegistryRace()
        first = last - len(planned) + 1

        def real(turn_id: int) -> int:
            return first - 1 - turn_id if turn_id < 0 else turn_id

        records: dict[int, TurnRecord] = {}
        for plan in planned:
            op = batch[plan.index]
            records[plan.slot] = TurnRecord(
                TurnId(first + plan.slot - 1), TurnId(real(plan.parent)), plan.depth, ContextId(op.context_id),
                op.type_id, op.type_version, ENCODING_MSGPACK, compression[op.digest], len(op.payload), op.digest,
                now, TurnId(real(plan.jump)))
        turns = [records[plan.slot] for plan in planned]
        await conn.execute(_INSERT_TURNS, [t.turn_id for t in turns], [t.parent_turn_id for t in turns],
                           [t.depth for t in turns], [t.context_id for t in turns], [now] * len(turns),
                           [t.jump_turn_id for t in turns], [plan.jump_depth for plan in planned],
                           [t.type_id.encode() for t in turns], [t.type_version for t in turns],
                           [t.encoding for t in turns], [t.compression for t in turns],
                           [t.uncompressed_len for t in turns], [t.content_hash for t in turns])
        contexts = sorted(moved)
        status = await conn.execute(_MOVE_HEADS, contexts, [moved[c][0] for c in contexts],
                                    [real(heads[c][0]) for c in contexts], [heads[c][1] for c in contexts], now)
        if status != f"UPDATE {len(contexts)}":  # the row locks make this impossible; never write past it
            raise StoreError("a context head moved under its lock")
        keyed = [plan for plan in planned if batch[plan.index].key is not None]
        if keyed:
            await conn.execute(_REMEMBER, [batch[p.index].context_id for p in keyed],
                               [batch[p.index].key for p in keyed], [first + p.slot - 1 for p in keyed],
                               [now] * len(keyed), [batch[p.index].request for p in keyed])
        return [_final(result, batch[index], records) for index, result in enumerate(outcome)], new_payloads

    async def _earlier(self, conn: Any, batch: list[PendingAppend], heads: dict[int, tuple[int, int]]) -> dict[
            tuple[int, bytes], tuple[bytes, int, TurnRecord | None]]:
        keyed = {(op.context_id, op.key) for op in batch if op.key is not None and op.context_id in heads}
        if not keyed:
            return {}
        rows = await conn.fetch(_IDEMPOTENCY, [c for c, _ in keyed], [k for _, k in keyed])
        return {(row[0], bytes(row[1])): (bytes(row[2]), row[3], turn(row, 4) if row[4] is not None else None)
                for row in rows}

    async def _spines(self, conn: Any, batch: list[PendingAppend],
                      heads: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int, int]]:
        """(depth, jump, jump depth) of each parent the batch names, and of every turn on its jump
        spine: all that the skew-binary pointers of any chain grown from them need."""
        wanted = {op.parent_turn_id for op in batch if op.parent_turn_id and fits(op.parent_turn_id)}
        wanted |= {head for head, _ in heads.values() if head}
        if not wanted:
            return {}
        rows = await conn.fetch(_SPINE, list(wanted))
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    async def _store_blobs(self, conn: Any, ops: list[PendingAppend]) -> tuple[dict[bytes, int], list[bytes], int]:
        """Each digest's stored compression, the payloads stored new, and their stored bytes."""
        digests = list({op.digest: None for op in ops})
        rows = await conn.fetch("SELECT content_hash, get_byte(stored, 0) FROM blobs "
                                "WHERE content_hash = ANY($1::bytea[])", digests)
        compression = {bytes(row[0]): row[1] for row in rows}
        fresh: dict[bytes, bytes] = {}
        for op in ops:
            if op.digest not in compression:
                fresh.setdefault(op.digest, op.payload)
        if not fresh:
            return compression, [], 0
        payloads = list(fresh.values())
        if sum(len(raw) for raw in payloads) <= INLINE_ENCODE_BYTES:
            framed = [self._codec.encode(raw) for raw in payloads]
        else:
            framed = await asyncio.get_running_loop().run_in_executor(
                None, lambda: [self._codec.encode(raw) for raw in payloads])
        inserted = await conn.fetch("INSERT INTO blobs (content_hash, stored) SELECT * FROM unnest($1::bytea[], "
                                    "$2::bytea[]) ON CONFLICT DO NOTHING RETURNING content_hash",
                                    list(fresh), [stored for stored, _ in framed])
        new = {bytes(row[0]) for row in inserted}
        stored_bytes = 0
        for digest, (stored, kind) in zip(fresh, framed, strict=True):
            if digest in new:
                compression[digest] = kind
                stored_bytes += len(stored)
        raced = [digest for digest in fresh if digest not in new]  # another gateway stored it meanwhile
        if raced:
            rows = await conn.fetch("SELECT content_hash, get_byte(stored, 0) FROM blobs "
                                    "WHERE content_hash = ANY($1::bytea[])", raced)
            compression.update({bytes(row[0]): row[1] for row in rows})
        return compression, [fresh[digest] for digest in fresh if digest in new], stored_bytes


def _final(result: Any, op: PendingAppend, records: dict[int, TurnRecord]) -> AppendResult | CxdbError:
    if isinstance(result, _Planned):
        return AppendResult(records[result.slot], False)
    if isinstance(result, _Repeat):
        record = records[result.plan.slot]
        return AppendResult(record, True) if result.same else _key_conflict(op, record.turn_id)
    assert isinstance(result, AppendResult | CxdbError)
    return result


def _key_conflict(op: PendingAppend, turn_id: int) -> Conflict:
    assert op.key is not None
    return Conflict("idempotency key reused with a different request",
                    {"context_id": str(op.context_id), "idempotency_key": op.key.decode(), "turn_id": str(turn_id)})
