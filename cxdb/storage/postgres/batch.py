"""One batch of appends, as one transaction of four round trips (five with idempotency keys).

1. ``BEGIN`` and ``LOCK`` in one simple-protocol script: the batch's contexts, ``SELECT ... FOR
   UPDATE`` in id order. Appends to one context serialize here across every gateway; a head moves by
   compare-and-set under this lock. The statements after it see what the transactions it waited for
   committed (READ COMMITTED takes a snapshot per statement), which is why nothing is read here.
2. ``READ``: the heads and the registry generation, the jump-pointer spines of the heads and of the
   parents named (O(log depth) rows each: all the skew-binary pointers of any chain grown from them
   need), and which payloads are stored already. With idempotency keys, one more statement reads
   their records.
3. In memory: each append decided in order (an append may build on one earlier in the batch), and
   the new payloads compressed.
4. ``WRITE``: one statement stores the new blobs (``ON CONFLICT DO NOTHING``: one another gateway
   stored meanwhile is a dedup hit), allocates the turn ids and event sequences from the counter row
   and adds the counts, inserts the turns and their ``turn_appended`` events, moves the heads and
   records the idempotency keys. The counter row's lock is held from here to COMMIT only, so event
   sequences grow in commit order across every gateway.
5. COMMIT, synchronously.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...codec import BlobCodec
from ...errors import Conflict, CxdbError, StoreError
from ...model import ENCODING_MSGPACK, BlobHash, ContextId, TurnId, TurnRecord
from ..base import AppendResult, RegistryMoved
from ..rules import child_jump, head_moved, missing_context, parent_not_found, partly_replayed
from .framing import frame
from .rows import ANCESTOR, SPINE, TURN, fits, turn

__all__ = ["PendingAppend", "PendingItem", "Race", "RegistryRace", "apply", "begin"]

_READ = "WITH RECURSIVE " + SPINE.format(
    start="$1::bigint[] || ARRAY(SELECT head_turn_id FROM contexts WHERE context_id = ANY($2::bigint[]))") + """
SELECT 1, turn_id, depth, jump_turn_id, jump_depth, NULL::bytea
FROM (SELECT DISTINCT turn_id, depth, jump_turn_id, jump_depth FROM spine) AS links
UNION ALL
SELECT 0, context_id, head_turn_id, head_depth, NULL, NULL FROM contexts WHERE context_id = ANY($2::bigint[])
UNION ALL
SELECT 2, get_byte(stored, 0), NULL, NULL, NULL, content_hash FROM blobs WHERE content_hash = ANY($3::bytea[])
UNION ALL
SELECT 3, bundles, NULL, NULL, NULL, NULL FROM counters WHERE id = 1
UNION ALL
SELECT 4, turn_id, NULL, NULL, NULL, NULL FROM turns WHERE turn_id = ANY($1::bigint[]) AND refs = 0"""
_IDEMPOTENCY = f"""
SELECT i.context_id, i.idempotency_key, i.request, i.turn_id, {", ".join("t." + c for c in TURN.split(", "))},
       h.head_turn_id
FROM idempotency i LEFT JOIN turns t ON t.turn_id = i.turn_id
LEFT JOIN head_history h ON h.context_id = i.context_id AND h.replaced_by_turn_id = i.turn_id
WHERE (i.context_id, i.idempotency_key) IN (SELECT * FROM unnest($1::bigint[], $2::bytea[]))"""
# Ids are base + slot; a parent or jump given as -slot is a turn of this batch.
_WRITE = """
WITH b AS (
    INSERT INTO blobs (content_hash, stored, refs) SELECT * FROM unnest($1::bytea[], $2::bytea[], $29::bigint[])
    ON CONFLICT (content_hash) DO UPDATE SET refs = blobs.refs + excluded.refs
    RETURNING content_hash, length(stored) AS size, xmax = 0 AS inserted),
n AS (
    SELECT count(*) AS new_blobs, coalesce(sum(b.size), 0) AS new_stored, coalesce(sum(r.raw), 0) AS new_raw
    FROM b JOIN unnest($1::bytea[], $3::bigint[]) AS r(hash, raw) ON r.hash = b.content_hash WHERE b.inserted),
s AS (
    UPDATE blobs SET refs = blobs.refs + v.n FROM unnest($30::bytea[], $31::bigint[]) AS v(hash, n)
    WHERE blobs.content_hash = v.hash RETURNING 1),
p AS (
    UPDATE turns SET refs = turns.refs + v.delta FROM unnest($32::bigint[], $33::bigint[]) AS v(id, delta)
    WHERE turns.turn_id = v.id AND turns.refs > 0 RETURNING 1),
c AS (
    UPDATE counters SET next_turn = next_turn + $4, turns = turns + $4, blobs = blobs + n.new_blobs,
        blob_stored = blob_stored + n.new_stored, blob_raw = blob_raw + n.new_raw,
        dedup_hits = dedup_hits + $4 - n.new_blobs, dedup_misses = dedup_misses + n.new_blobs,
        next_event = next_event + $4
    FROM n WHERE id = 1 RETURNING next_turn - $4 AS base, next_event - $4 AS event_base, bundles),
e AS (
    INSERT INTO events (sequence, kind, created_at_ms, context_id, a, b)
    SELECT c.event_base + u.slot, 2, $5, u.context_id, c.base + u.slot, 0
    FROM c, unnest($6::bigint[], $9::bigint[]) AS u(slot, context_id)
    RETURNING 1),
t AS (
    INSERT INTO turns (turn_id, parent_turn_id, depth, context_id, created_at_ms, jump_turn_id, jump_depth,
                       type_id, type_version, encoding, compression, uncompressed_len, content_hash, refs)
    SELECT c.base + u.slot, CASE WHEN u.parent < 0 THEN c.base - u.parent ELSE u.parent END, u.depth,
           u.context_id, $5, CASE WHEN u.jump < 0 THEN c.base - u.jump ELSE u.jump END, u.jump_depth,
           u.type_id, u.type_version, 1, u.compression, u.length, u.hash, u.refs
    FROM c, unnest($6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                   $12::bytea[], $13::bigint[], $14::smallint[], $15::bigint[], $16::bytea[], $34::bigint[])
         AS u(slot, parent, depth, context_id, jump, jump_depth, type_id, type_version, compression, length, hash,
              refs)
    RETURNING 1),
h AS (
    UPDATE contexts AS x SET head_turn_id = CASE WHEN v.head < 0 THEN c.base - v.head ELSE v.head END,
        head_depth = v.depth, last_activity_ms = $5
    FROM c, unnest($17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[]) AS v(id, old_head, head, depth)
    WHERE x.context_id = v.id AND x.head_turn_id = v.old_head
    RETURNING 1),
r AS (
    INSERT INTO head_history (context_id, replaced_by_turn_id, head_turn_id, head_depth, replaced_at_ms)
    SELECT w.context_id, c.base + w.slot, CASE WHEN w.head < 0 THEN c.base - w.head ELSE w.head END, w.depth, $5
    FROM c, unnest($25::bigint[], $26::bigint[], $27::bigint[], $28::bigint[]) AS w(context_id, slot, head, depth)
    RETURNING 1),
k AS (
    INSERT INTO idempotency (context_id, idempotency_key, turn_id, created_at_ms, request)
    SELECT w.context_id, w.key, c.base + w.slot, $5, w.request
    FROM c, unnest($21::bigint[], $22::bytea[], $23::bigint[], $24::bytea[]) AS w(context_id, key, slot, request)
    ON CONFLICT (context_id, idempotency_key)
    DO UPDATE SET turn_id = EXCLUDED.turn_id, created_at_ms = EXCLUDED.created_at_ms, request = EXCLUDED.request
    RETURNING 1)
SELECT c.base, c.bundles, (SELECT count(*) FROM h), (SELECT count(*) FROM t), (SELECT count(*) FROM e),
       (SELECT coalesce(array_agg(content_hash) FILTER (WHERE inserted), '{}') FROM b),
       (SELECT count(*) FROM s) + (SELECT count(*) FROM p)
FROM c"""
# A blob another gateway stored between READ and WRITE: the turns take its framing's compression.
_RACED = """
UPDATE turns SET compression = get_byte(b.stored, 0) FROM blobs b
WHERE turns.turn_id = ANY($1::bigint[]) AND b.content_hash = turns.content_hash
RETURNING turns.turn_id, turns.compression"""


@dataclass(slots=True)
class PendingItem:
    """One turn of a pending append."""

    type_id: str
    type_version: int
    payload: bytes
    digest: BlobHash
    key: bytes | None
    request: bytes


@dataclass(slots=True)
class PendingAppend:
    """One append request waiting for its batch: a chain of one or more turns, stored all or none."""

    context_id: int
    items: list[PendingItem]
    parent_turn_id: int | None
    generation: int | None
    future: asyncio.Future[list[AppendResult]]
    expected_head: int | None = None


@dataclass(slots=True)
class _Planned:
    """A turn the batch will write; ``slot`` numbers it among them (its id is allocated later)."""

    context_id: int
    item: PendingItem
    slot: int
    parent: int
    depth: int
    jump: int
    jump_depth: int
    replaced: int = 0
    """The head this turn moves the context away from (minus its slot when new in this batch); 0: none."""
    replaced_depth: int = 0


@dataclass(slots=True)
class _Repeat:
    """A turn repeating the idempotency key of a planned one: a replay of its turn, or a Conflict."""

    plan: _Planned
    same: bool


@dataclass(slots=True)
class _HeadMoved:
    """An append whose expected head was not the head: ``head`` is the one found (a new turn of this
    batch as minus its slot)."""

    head: int


class Race(Exception):
    """Something the batch read changed before it wrote: run it again."""


class RegistryRace(Race):
    """A bundle was published between the batch's read of the generation and its counter update."""


class ReclaimRace(Race):
    """Reclamation took a blob or a parent the batch read, before the batch held it."""


Links = dict[int, tuple[int, int, int]]
"""turn id -> (depth, jump, jump depth)."""
Outcome = list[AppendResult | _Planned | _Repeat] | CxdbError | _HeadMoved
"""What one append request comes to, before the batch's ids are known."""


def begin(batch: list[PendingAppend]) -> str:
    """The script that opens a batch's transaction and locks its contexts, in id order (every writer
    locks in that order, so two never deadlock). Ids are integers, written as a literal."""
    ids = ",".join(str(i) for i in sorted({op.context_id for op in batch if fits(op.context_id)}))
    return (f"BEGIN; SELECT 1 FROM contexts WHERE context_id = ANY('{{{ids}}}'::bigint[]) "
            "ORDER BY context_id FOR UPDATE")


async def apply(conn: Any, batch: list[PendingAppend], codec: BlobCodec,
                clock: Callable[[], float]) -> tuple[list[list[AppendResult] | CxdbError], list[bytes]]:
    """Run the batch in ``conn``'s open transaction: each request's results or error, and the payloads
    stored new. Has no effect outside the database, so the caller may run it again."""
    now = int(clock() * 1000)
    ids = sorted({op.context_id for op in batch if fits(op.context_id)})
    parents = list({op.parent_turn_id for op in batch if op.parent_turn_id and fits(op.parent_turn_id)})
    digests = list({item.digest for op in batch for item in op.items})
    heads: dict[int, tuple[int, int]] = {}
    links: Links = {}
    compression: dict[bytes, int] = {}
    unreachable: set[int] = set()
    generation = 0  # as the batch starts; WRITE reads it again under the counter row's lock
    for kind, a, b, c, d, digest in await conn.fetch(_READ, parents, ids, digests):
        if kind == 1:
            links[a] = (b, c, d)
        elif kind == 0:
            heads[a] = (b, c)
        elif kind == 2:
            compression[bytes(digest)] = a
        elif kind == 3:
            generation = a
        else:
            unreachable.add(a)
    for turn_id in unreachable:  # awaiting reclamation: no longer a parent
        links.pop(turn_id, None)
    earlier = await _earlier(conn, batch, heads)

    outcome: list[Outcome] = []
    planned: list[_Planned] = []
    batch_keys: dict[tuple[int, bytes], _Planned] = {}
    moved: dict[int, tuple[int, int]] = {}  # context -> the head it had before this batch
    for op in batch:
        decided = _decide(op, generation, heads, earlier, batch_keys)
        if decided is not None:
            outcome.append(decided)
            continue
        head, head_depth = heads[op.context_id]
        if op.expected_head is not None and head != op.expected_head:
            outcome.append(_HeadMoved(head))  # a head written by this batch gets its id in _final
            continue
        parent = head if op.parent_turn_id is None else op.parent_turn_id
        plans: list[_Planned] = []
        for item in op.items:  # a chain: each turn's parent is the one before
            plan = _plan(op.context_id, item, len(planned) + len(plans) + 1, parent, links)
            if plan is None:
                break
            plans.append(plan)
            links[-plan.slot] = (plan.depth, plan.jump, plan.jump_depth)  # a later turn may build on it
            parent = -plan.slot
        if not plans:
            outcome.append(parent_not_found(op.context_id, parent))
            continue
        first = plans[0]
        if head and first.parent != head and (
                head < 0 or await conn.fetchval(ANCESTOR, first.parent, head_depth) != head):
            first.replaced, first.replaced_depth = head, head_depth  # kept in the head history
        planned.extend(plans)
        outcome.append(list(plans))
        moved.setdefault(op.context_id, heads[op.context_id])
        heads[op.context_id] = (-plans[-1].slot, plans[-1].depth)
        for plan in plans:
            if plan.item.key is not None:
                batch_keys[(op.context_id, plan.item.key)] = plan
    records: dict[int, TurnRecord] = {}
    new_payloads: list[bytes] = []
    if planned:
        records, new_payloads = await _write(conn, batch, planned, compression, heads, moved, generation, now, codec)
    return [_final(result, op, records) for result, op in zip(outcome, batch, strict=True)], new_payloads


def _decide(op: PendingAppend, generation: int, heads: dict[int, tuple[int, int]],
            earlier: dict[tuple[int, bytes], tuple[bytes, int, TurnRecord | None, int | None]],
            batch_keys: dict[tuple[int, bytes], _Planned]) -> Outcome | None:
    """What a request comes to without writing anything, in the LMDB store's order of checks; None when
    its turns are to be written."""
    if op.generation is not None and op.generation != generation:
        return RegistryMoved("the registry changed", {"generation": generation})
    if op.context_id not in heads:
        return missing_context(op.context_id)
    repeats: list[AppendResult | _Planned | _Repeat] = []
    replayed: list[int] = []
    for index, item in enumerate(op.items):
        if item.key is None:
            continue
        found = batch_keys.get((op.context_id, item.key))
        if found is not None:
            repeats.append(_Repeat(found, found.item.request == item.request))
            replayed.append(index)
            continue
        stored = earlier.get((op.context_id, item.key))
        if stored is None:
            continue
        request, turn_id, record, replaced = stored
        if request != item.request:
            return _key_conflict(op.context_id, item, turn_id)
        if record is not None:
            repeats.append(AppendResult(record, True, replaced))
            replayed.append(index)
    if not replayed:
        return None
    if len(replayed) != len(op.items):
        return partly_replayed(op.context_id, replayed)
    return repeats


def _plan(context_id: int, item: PendingItem, slot: int, parent: int, links: Links) -> _Planned | None:
    """The new turn's depth and skew-binary jump pointer; None when the parent does not exist."""
    if not parent:
        return _Planned(context_id, item, slot, 0, 1, 0, 0)
    found = links.get(parent)
    if found is None:
        return None
    depth, jump, jump_depth = found
    grand = links.get(jump) if jump else (0, 0, 0)
    if grand is None:  # READ reaches every jump target; a gap is damage
        raise StoreError("a turn's jump target is missing", {"turn_id": str(jump)})
    child, child_depth = child_jump(parent, depth, jump_depth, grand[1], grand[2])
    return _Planned(context_id, item, slot, parent, depth + 1, child, child_depth)


async def _write(conn: Any, batch: list[PendingAppend], planned: list[_Planned], compression: dict[bytes, int],
                 heads: dict[int, tuple[int, int]], moved: dict[int, tuple[int, int]], generation: int, now: int,
                 codec: BlobCodec) -> tuple[dict[int, TurnRecord], list[bytes]]:
    items = [plan.item for plan in planned]
    fresh: dict[bytes, bytes] = {}
    for item in items:
        if item.digest not in compression:
            fresh.setdefault(item.digest, item.payload)
    framed = await frame(codec, list(fresh.values()))
    ours = dict(compression)
    ours.update({digest: kind for digest, (_, kind) in zip(fresh, framed, strict=True)})
    contexts = sorted(moved)
    keyed = [plan for plan in planned if plan.item.key is not None]
    history = [plan for plan in planned if plan.replaced]
    holds = _holds(planned, [moved[c][0] for c in contexts], [heads[c][0] for c in contexts], history)
    held = sorted(turn_id for turn_id, delta in holds.items() if turn_id > 0 and delta)
    uses: dict[bytes, int] = {}
    for item in items:
        uses[item.digest] = uses.get(item.digest, 0) + 1
    seen = [digest for digest in uses if digest not in fresh]
    base, bundles, moved_count, inserted, recorded, stored_new, holding = await conn.fetchrow(
        _WRITE, list(fresh), [stored for stored, _ in framed], [len(raw) for raw in fresh.values()],
        len(planned), now,
        [plan.slot for plan in planned], [plan.parent for plan in planned], [plan.depth for plan in planned],
        [plan.context_id for plan in planned], [plan.jump for plan in planned],
        [plan.jump_depth for plan in planned], [item.type_id.encode() for item in items],
        [item.type_version for item in items], [ours[item.digest] for item in items],
        [len(item.payload) for item in items], [item.digest for item in items],
        contexts, [moved[c][0] for c in contexts], [heads[c][0] for c in contexts], [heads[c][1] for c in contexts],
        [p.context_id for p in keyed], [p.item.key for p in keyed], [p.slot for p in keyed],
        [p.item.request for p in keyed],
        [p.context_id for p in history], [p.slot for p in history], [p.replaced for p in history],
        [p.replaced_depth for p in history], [uses[digest] for digest in fresh], seen, [uses[d] for d in seen],
        held, [holds[turn_id] for turn_id in held], [holds.get(-plan.slot, 0) for plan in planned])
    if holding != len(seen) + len(held):
        raise ReclaimRace()  # reclamation took a blob or parent since READ: run again (READ then sees it gone)
    if bundles != generation and any(op.generation is not None for op in batch):
        raise RegistryRace()  # a bundle was published since the batch read the generation: run it again
    if moved_count != len(contexts) or len(planned) != inserted or len(planned) != recorded:  # locks forbid it
        raise StoreError("a context head moved under its lock")
    stored = {bytes(digest) for digest in stored_new}
    raced = [base + plan.slot for plan in planned if plan.item.digest in fresh and plan.item.digest not in stored]
    fixed: dict[int, int] = {}
    if raced:
        fixed = {turn_id: kind for turn_id, kind in await conn.fetch(_RACED, raced)}

    def real(turn_id: int) -> int:
        return base - turn_id if turn_id < 0 else turn_id

    records = {plan.slot: TurnRecord(
        TurnId(base + plan.slot), TurnId(real(plan.parent)), plan.depth, ContextId(plan.context_id),
        plan.item.type_id, plan.item.type_version, ENCODING_MSGPACK,
        fixed.get(base + plan.slot, ours[plan.item.digest]), len(plan.item.payload), plan.item.digest, now,
        TurnId(real(plan.jump))) for plan in planned}
    return records, [fresh[digest] for digest in fresh if digest in stored]


def _holds(planned: list[_Planned], old_heads: list[int], new_heads: list[int],
           history: list[_Planned]) -> dict[int, int]:
    """How the batch changes reference counts (cxdb.storage.lmdb.refs says what holds a turn): per
    stored turn id, the change; per new turn, as minus its slot, its count."""
    holds: dict[int, int] = {}
    for turn_id, delta in ([(plan.parent, 1) for plan in planned] + [(head, -1) for head in old_heads]
                           + [(head, 1) for head in new_heads] + [(plan.replaced, 1) for plan in history]):
        if turn_id:
            holds[turn_id] = holds.get(turn_id, 0) + delta
    return holds



async def _earlier(conn: Any, batch: list[PendingAppend], heads: dict[int, tuple[int, int]]) -> dict[
        tuple[int, bytes], tuple[bytes, int, TurnRecord | None, int | None]]:
    """The stored idempotency records of the batch's keys: the request, its turn (and that turn's
    record, if it still exists), and the head the turn replaced, so a replay answers as the original."""
    keyed = {(op.context_id, item.key) for op in batch if op.context_id in heads
             for item in op.items if item.key is not None}
    if not keyed:
        return {}
    rows = await conn.fetch(_IDEMPOTENCY, [c for c, _ in keyed], [k for _, k in keyed])
    return {(row[0], bytes(row[1])): (bytes(row[2]), row[3], turn(row, 4) if row[4] is not None else None, row[-1])
            for row in rows}


def _final(result: Outcome, op: PendingAppend, records: dict[int, TurnRecord]) -> list[AppendResult] | CxdbError:
    if isinstance(result, CxdbError):
        return result
    if isinstance(result, _HeadMoved):
        head = records[-result.head].turn_id if result.head < 0 else result.head
        assert op.expected_head is not None
        return head_moved(op.context_id, op.expected_head, head)
    found: list[AppendResult] = []
    for entry in result:
        if isinstance(entry, _Planned):
            replaced = records[-entry.replaced].turn_id if entry.replaced < 0 else entry.replaced
            found.append(AppendResult(records[entry.slot], False, replaced or None))
        elif isinstance(entry, _Repeat):
            record = records[entry.plan.slot]
            if not entry.same:
                return _key_conflict(op.context_id, entry.plan.item, record.turn_id)
            found.append(AppendResult(record, True))
        else:
            found.append(entry)
    return found


def _key_conflict(context_id: int, item: PendingItem, turn_id: int) -> Conflict:
    assert item.key is not None
    return Conflict("idempotency key reused with a different request",
                    {"context_id": str(context_id), "idempotency_key": item.key.decode(), "turn_id": str(turn_id)})
