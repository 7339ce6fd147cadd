"""Rules every backend keeps the same way: limits on what a write may carry, the fingerprint of an
idempotent request, and the skew-binary jump pointers that make a cursor check O(log depth).

Pure: no I/O. A backend stores what these rules compute; it never decides them itself.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import blake3

from ..codec import content_hash
from ..errors import Conflict, NotFound, Unprocessable
from ..model import BlobHash, ContextRecord, TurnRecord
from .base import NewTurn, RestoredContext

__all__ = ["MAX_DELETE", "MAX_KEY_BYTES", "MAX_TAG_BYTES", "being_reclaimed", "context_being_reclaimed",
           "check_append", "check_tag", "child_jump", "head_moved", "jump_step", "missing_context", "missing_turn",
           "parent_not_found", "partly_replayed", "prepare", "request_digest", "restored_context_clash",
           "restored_context_problem", "restored_references", "restored_turn_clash", "restored_turn_problem",
           "too_many_to_delete"]

MAX_TAG_BYTES = 400
"""A tag is part of an index key (LMDB keys are at most 511 bytes)."""
MAX_KEY_BYTES = 400
"""An idempotency key is part of an index key too."""
MAX_TYPE_ID_BYTES = 400
"""As the HTTP API accepts."""
MAX_DELETE = 10_000
"""Contexts one deletion may remove (a context and its descendants): one transaction's worth."""
_U32_MAX = (1 << 32) - 1


def check_tag(client_tag: str | None) -> None:
    if client_tag is not None and len(client_tag.encode()) > MAX_TAG_BYTES:
        raise Unprocessable("client_tag too long", {"field": "client_tag", "max_bytes": MAX_TAG_BYTES})


def check_append(type_version: int, idempotency_key: str | None) -> None:
    if not 0 <= type_version <= _U32_MAX:
        raise Unprocessable("type_version out of range", {"field": "type_version"})
    if idempotency_key is not None and len(idempotency_key.encode()) > MAX_KEY_BYTES:
        raise Unprocessable("idempotency_key too long", {"field": "idempotency_key", "max_bytes": MAX_KEY_BYTES})


def head_moved(context_id: int, expected: int, head: int) -> Conflict:
    """An append that named the head it expected, when the head is another."""
    return Conflict(f"the head of context {context_id} is {head}, not {expected}",
                    {"reason": "head_moved", "context_id": str(context_id), "expected_head_turn_id": str(expected),
                     "head_turn_id": str(head)})


def missing_context(context_id: int) -> NotFound:
    return NotFound(f"Context {context_id} not found", {"context_id": str(context_id)})


def missing_turn(turn_id: int) -> NotFound:
    return NotFound(f"Turn {turn_id} not found", {"turn_id": str(turn_id)})


def parent_not_found(context_id: int, parent: int) -> Conflict:
    return Conflict(f"Parent turn {parent} not found",
                    {"reason": "parent_not_found", "parent_turn_id": str(parent), "context_id": str(context_id)})


def too_many_to_delete(context_id: int, found: int, limit: int = MAX_DELETE) -> Unprocessable:
    return Unprocessable(f"deleting context {context_id} would delete more than {limit} contexts: delete its "
                         "subtrees first", {"context_id": str(context_id), "found_at_least": found,
                                            "max_contexts": limit})


def being_reclaimed(turn_id: int) -> Conflict:
    return Conflict(f"turn {turn_id} is unreachable and being reclaimed: run `cxdb gc`, then try again",
                    {"turn_id": str(turn_id), "reason": "being_reclaimed"})


def context_being_reclaimed(context_id: int) -> Conflict:
    return Conflict(f"context {context_id} was deleted and is being reclaimed: run `cxdb gc`, then try again",
                    {"context_id": str(context_id), "reason": "being_reclaimed"})


def partly_replayed(context_id: int, replayed: list[int]) -> Conflict:
    """A batch some of whose idempotency keys were used before and some not: a retry repeats a whole
    batch, so this is another request reusing keys."""
    return Conflict("some turns of the batch repeat idempotency keys used before and some do not",
                    {"reason": "partly_replayed", "context_id": str(context_id), "replayed_indexes": replayed})


def prepare(turns: Sequence[NewTurn], parent_turn_id: int | None) -> list[tuple[NewTurn, BlobHash, bytes]]:
    """Each turn of an append checked, with its content hash and what its idempotency key stands for
    (empty without a key): its fingerprint, or by default its type, payload and, for the first turn of
    the chain, the parent asked for."""
    prepared = []
    for index, turn in enumerate(turns):
        check_append(turn.type_version, turn.idempotency_key)
        digest = content_hash(turn.payload)
        request = b""
        if turn.idempotency_key is not None:
            request = turn.fingerprint or request_digest(turn.type_id, turn.type_version, digest,
                                                         parent_turn_id if index == 0 else None)
        prepared.append((turn, digest, request))
    return prepared


def request_digest(type_id: str, type_version: int, digest: BlobHash, parent: int | None) -> bytes:
    """What an append asked for, as its idempotency key remembers it: a repeat of the key with another
    digest is a Conflict."""
    hasher = blake3.blake3(type_id.encode())
    hasher.update(struct.pack(">IQ?", type_version, parent or 0, parent is not None))
    hasher.update(digest)
    return hasher.digest()


def child_jump(parent_id: int, depth: int, jump_depth: int, grand_jump: int, grand_jump_depth: int) -> tuple[int, int]:
    """The jump pointer and its depth for a new child of ``parent_id`` (Myers' skew-binary scheme).

    ``depth`` and ``jump_depth`` are the parent's depth and its jump's depth; ``grand_jump`` and
    ``grand_jump_depth`` are the jump pointer of the parent's jump target (0, 0 at the root).
    """
    if depth - jump_depth == jump_depth - grand_jump_depth:
        return grand_jump, grand_jump_depth
    return parent_id, depth


def jump_step(parent: int, jump: int, jump_depth: int, target_depth: int) -> int:
    """The next turn on the way down to ``target_depth``: the jump when it does not overshoot."""
    return jump if jump and jump_depth >= target_depth else parent


def restored_turn_problem(turn: TurnRecord, parent_depth: int | None) -> Unprocessable | None:
    """What is wrong with a turn to restore whose parent has ``parent_depth`` (None: not in the store,
    nor before it in the restore); None when it fits."""
    if turn.parent_turn_id and parent_depth is None:
        return Unprocessable(f"turn {turn.turn_id}: its parent {turn.parent_turn_id} is neither in the store nor "
                             "before it", {"turn_id": str(turn.turn_id), "parent_turn_id": str(turn.parent_turn_id)})
    if turn.depth != (parent_depth or 0) + 1:
        return Unprocessable(f"turn {turn.turn_id}: depth {turn.depth} is not its parent's plus one",
                             {"turn_id": str(turn.turn_id), "depth": turn.depth})
    if not turn.type_id or len(turn.type_id.encode()) > MAX_TYPE_ID_BYTES or not 0 <= turn.type_version <= _U32_MAX:
        return Unprocessable(f"turn {turn.turn_id}: type_id empty or over {MAX_TYPE_ID_BYTES} bytes, or type_version "
                             "out of range", {"turn_id": str(turn.turn_id)})
    return None


def restored_turn_clash(stored: TurnRecord, incoming: TurnRecord) -> Conflict | None:
    """A Conflict when the store holds another turn under the id of one to restore; None when it is the
    same turn (imported before)."""
    same = (stored.parent_turn_id, stored.depth, stored.context_id, stored.type_id, stored.type_version,
            stored.content_hash, stored.created_at_ms) == (
        incoming.parent_turn_id, incoming.depth, incoming.context_id, incoming.type_id, incoming.type_version,
        incoming.content_hash, incoming.created_at_ms)
    return None if same else Conflict(f"turn {incoming.turn_id} is in the store already, as another turn",
                                      {"reason": "id_collides", "turn_id": str(incoming.turn_id)})


def restored_context_clash(stored: ContextRecord, incoming: ContextRecord) -> Conflict | None:
    """As :func:`restored_turn_clash`, for a context (its head may have moved since: it is not compared)."""
    same = (stored.created_at_ms, stored.client_tag, stored.provenance, stored.lineage) == (
        incoming.created_at_ms, incoming.client_tag, incoming.provenance, incoming.lineage)
    return None if same else Conflict(f"context {incoming.context_id} is in the store already, as another context",
                                      {"reason": "id_collides", "context_id": str(incoming.context_id)})


def restored_references(context: RestoredContext) -> set[int]:
    """Every turn a context to restore names: its head, fork point, replaced heads and keyed turns."""
    record = context.record
    named = {record.head_turn_id, record.lineage.fork_turn_id or 0}
    named.update(entry.head_turn_id for entry in context.history)
    named.update(entry.replaced_by_turn_id for entry in context.history)
    named.update(key.turn_id for key in context.keys)
    named.discard(0)
    return named


def restored_context_problem(context: RestoredContext, depths: Mapping[int, int]) -> Unprocessable | None:
    """What is wrong with a context to restore, given the depth of each turn it names that exists
    (:func:`restored_references`); None when it fits."""
    record = context.record
    if record.client_tag is not None and len(record.client_tag.encode()) > MAX_TAG_BYTES:
        return Unprocessable(f"context {record.context_id}: client_tag over {MAX_TAG_BYTES} bytes",
                             {"context_id": str(record.context_id), "field": "client_tag"})
    if any(len(key.key.encode()) > MAX_KEY_BYTES for key in context.keys):
        return Unprocessable(f"context {record.context_id}: an idempotency key over {MAX_KEY_BYTES} bytes",
                             {"context_id": str(record.context_id), "field": "idempotency_key"})
    missing = sorted(turn_id for turn_id in restored_references(context) if turn_id not in depths)
    if missing:
        return Unprocessable(f"context {record.context_id} names turns neither in the store nor restored with it",
                             {"context_id": str(record.context_id), "turn_ids": [str(t) for t in missing[:10]]})
    named: list[tuple[int, int]] = [(record.head_turn_id, record.head_depth)]
    named.extend((entry.head_turn_id, entry.head_depth) for entry in context.history)
    if any(depths.get(turn_id, 0) != depth for turn_id, depth in named):
        return Unprocessable(f"context {record.context_id}: a head's depth is not its turn's",
                             {"context_id": str(record.context_id)})
    return None
