"""Content-addressed blobs.

Sub-database ``blobs``: key = the 32-byte BLAKE3-256 of the uncompressed bytes;
value = the framed blob of :class:`cxdb.codec.BlobCodec` (1-byte compression,
u32 big-endian uncompressed length, then the payload raw or as a zstd frame).

A blob is written once. Putting a hash that is present is a dedup hit: nothing
is written but its reference count (:mod:`.refs`), which every put adds to.
Counters ``blobs``, ``blob_stored``, ``blob_raw``, ``dedup_hits`` and
``dedup_misses`` track them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...codec import BlobCodec
from ...model import BlobHash
from .refs import add_blob
from .writer import WriteContext

__all__ = ["get_stored", "put", "put_all"]


def put(w: WriteContext, codec: BlobCodec, digest: BlobHash, raw: bytes,
        observe: Callable[[bytes], None] | None = None) -> int:
    """Store ``raw`` under ``digest`` unless present, for one more turn; returns the compression of
    the stored copy."""
    return put_all(w, codec, [(digest, raw)], observe)[0]


def put_all(w: WriteContext, codec: BlobCodec, entries: Sequence[tuple[BlobHash, bytes]],
            observe: Callable[[bytes], None] | None = None) -> list[int]:
    """Store each (digest, raw bytes) unless present, for one more turn; returns the compression of
    each stored copy (a blob already stored keeps its own).

    Only the new blobs are compressed, all in one zstd call, and put with one ``putmulti``: lookups
    hold the GIL, but zstd and LMDB's puts release it, once a call, and a thread that releases it
    while the event loop runs Python may wait long to get it back."""
    txn, db = w.txn, w.dbs.blobs
    found: list[int | None] = []
    new: dict[bytes, bytes] = {}
    for digest, raw in entries:
        if digest in new:
            w.counters.add("dedup_hits")
            add_blob(w, digest, 1)  # not stored yet: no count changes from or to 0, so no size needed
            found.append(None)
            continue
        stored = txn.get(digest, db=db)
        if stored is not None:
            found.append(_again(w, digest, stored))
            continue
        new[digest] = raw  # named by one turn: no count (see .refs)
        found.append(None)
    framed: dict[bytes, tuple[bytes, int]] = {}
    if new:
        framed = dict(zip(new, codec.encode_all(list(new.values())), strict=True))
        txn.cursor(db=db).putmulti([(digest, stored) for digest, (stored, _) in framed.items()])
        if observe is not None:
            for raw in new.values():
                observe(raw)
        w.counters.add("dedup_misses", len(new))
        w.counters.add("blobs", len(new))
        w.counters.add("blob_stored", sum(len(stored) for stored, _ in framed.values()))
        w.counters.add("blob_raw", sum(len(raw) for raw in new.values()))
    return [framed[digest][1] if compression is None else compression
            for (digest, _), compression in zip(entries, found, strict=True)]


def _again(w: WriteContext, digest: BlobHash, stored: Any) -> int:
    """A dedup hit: one more reference to a stored blob."""
    w.counters.add("dedup_hits")
    add_blob(w, digest, 1, len(stored))
    return BlobCodec.header(stored)[0]


def get_stored(txn: Any, blobs_db: Any, digest: bytes) -> bytes | None:
    """The framed bytes stored under ``digest``, or None."""
    value = txn.get(digest, db=blobs_db)
    return bytes(value) if value is not None else None
