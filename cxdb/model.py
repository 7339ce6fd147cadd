"""Identifiers and immutable records shared by every layer.

Pure: no I/O, no clock, no globals beyond constants.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, NamedTuple, NewType

__all__ = [
    "ADMIN",
    "READ",
    "SCOPES",
    "WRITE",
    "allows",
    "U64_MAX",
    "BlobHash",
    "ContextId",
    "ContextRecord",
    "Lineage",
    "Page",
    "StoreStats",
    "TurnId",
    "TurnRecord",
    "iso_utc",
    "parse_u64",
]

U64_MAX = (1 << 64) - 1

TurnId = NewType("TurnId", int)
"""A turn's id: u64, allocated monotonically; 0 means "no turn"."""

ContextId = NewType("ContextId", int)
"""A context's id: u64, allocated monotonically from 1."""

BlobHash = NewType("BlobHash", bytes)
"""The 32-byte BLAKE3 hash of a blob's uncompressed bytes."""

ENCODING_MSGPACK = 1
COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
COMPRESSION_DICT = 2


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def iso_utc(millis: int) -> str | None:
    """ISO 8601 UTC with milliseconds and ``Z``; None outside the years 1 to 9999."""
    try:
        moment = _EPOCH + datetime.timedelta(milliseconds=millis)
    except OverflowError:
        return None
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


READ, WRITE, ADMIN = "cxdb:read", "cxdb:write", "cxdb:admin"
SCOPES = (READ, WRITE, ADMIN)
"""The scopes of access tokens: each allows what the ones before it allow."""


def allows(have: str, need: str) -> bool:
    """Whether a token of scope ``have`` may do what needs ``need``."""
    return SCOPES.index(have) >= SCOPES.index(need)


FLOAT_EXACT = 1 << 53
"""The largest magnitude up to which every integer is exactly a float."""


def _u64_pattern() -> str:
    """A regular expression matching exactly the canonical decimal spellings of 0 .. 2^64 - 1."""
    top = str(U64_MAX)
    branches = ["0", f"[1-9][0-9]{{0,{len(top) - 2}}}"]  # up to 19 digits: all below 2^64
    for index, digit in enumerate(top):  # 20 digits: agree with the maximum up to a smaller digit
        if digit == "0":
            continue
        low = "1" if index == 0 else "0"
        upper = str(int(digit) - 1)
        if int(upper) < int(low):
            continue
        rest = len(top) - index - 1
        branches.append(f"{top[:index]}[{low}-{upper}][0-9]{{{rest}}}" if rest else f"{top[:index]}[{low}-{upper}]")
    branches.append(top)
    return "^(?:" + "|".join(branches) + ")$"


U64_PATTERN = _u64_pattern()


def parse_u64(value: object) -> int:
    """Read a u64 given as a non-negative int or a decimal string.

    An integral float (``227.0``) is the integer it names, as in JSON Schema, up to 2^53, where
    floats stop being exact. Raises ValueError when the value is not one.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an id")
    if isinstance(value, float) and value.is_integer() and abs(value) <= FLOAT_EXACT:
        value = int(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 20 or (len(value) > 1 and value[0] == "0"):
            raise ValueError("not a canonical decimal integer")  # one spelling per id: "7", never "007"
        number = int(value)
    else:
        raise ValueError("not an integer or a decimal string")
    if not 0 <= number <= U64_MAX:
        raise ValueError("out of the u64 range")
    return number


class TurnRecord(NamedTuple):
    """One immutable turn of the DAG (a named tuple: appends make one per turn, at a fifth of a frozen
    dataclass's cost)."""

    turn_id: TurnId
    parent_turn_id: TurnId
    depth: int
    context_id: ContextId
    type_id: str
    type_version: int
    encoding: int
    compression: int
    uncompressed_len: int
    content_hash: BlobHash
    created_at_ms: int
    jump_turn_id: TurnId


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a context came from: the context and turn it was forked at."""

    parent_context_id: ContextId | None
    root_context_id: ContextId
    fork_turn_id: TurnId | None


@dataclass(frozen=True, slots=True)
class ContextRecord:
    """A context: a mutable pointer to a head turn, plus its metadata."""

    context_id: ContextId
    head_turn_id: TurnId
    head_depth: int
    created_at_ms: int
    last_activity_ms: int
    client_tag: str | None
    provenance: dict[str, Any] | None
    lineage: Lineage


@dataclass(frozen=True, slots=True)
class Page:
    """Turns of one context's chain, oldest first, and the cursor to older ones."""

    context: ContextRecord
    turns: list[TurnRecord]
    next_before_turn_id: TurnId | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters kept by the store; every one is O(1) to read."""

    contexts: int
    turns: int
    blobs: int
    storage_bytes: int
    blob_stored_bytes: int
    blob_raw_bytes: int
    dedup_hits: int
    dedup_misses: int

    @property
    def dedup_hit_rate(self) -> float:
        total = self.dedup_hits + self.dedup_misses
        return self.dedup_hits / total if total else 0.0
