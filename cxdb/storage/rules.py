"""Rules every backend keeps the same way: limits on what a write may carry, the fingerprint of an
idempotent request, and the skew-binary jump pointers that make a cursor check O(log depth).

Pure: no I/O. A backend stores what these rules compute; it never decides them itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import blake3

from ..codec import content_hash
from ..errors import Conflict, NotFound, Unprocessable
from ..model import BlobHash
from .base import NewTurn

__all__ = ["MAX_KEY_BYTES", "MAX_TAG_BYTES", "check_append", "check_tag", "child_jump", "head_moved", "jump_step",
           "missing_context", "missing_turn", "parent_not_found", "partly_replayed", "prepare", "request_digest"]

MAX_TAG_BYTES = 400
"""A tag is part of an index key (LMDB keys are at most 511 bytes)."""
MAX_KEY_BYTES = 400
"""An idempotency key is part of an index key too."""
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
