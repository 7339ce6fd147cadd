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

from collections.abc import Callable, Iterable
from typing import Any

from ...codec import BlobCodec
from ...model import BlobHash
from .refs import add_blob
from .writer import WriteContext

__all__ = ["get_stored", "put", "put_framed"]


def put(w: WriteContext, codec: BlobCodec, digest: BlobHash, raw: bytes,
        observe: Callable[[bytes], None] | None = None) -> int:
    """Store ``raw`` under ``digest`` unless present, for one more turn; returns the compression of
    the stored copy. Compresses here, and only a new blob; appends frame theirs before the writer
    takes them (:func:`put_framed`)."""
    stored = w.txn.get(digest, db=w.dbs.blobs)
    if stored is not None:
        return _again(w, digest, stored)
    return put_framed(w, [(digest, raw, *codec.encode(raw))], observe)[0]


def put_framed(w: WriteContext, entries: Iterable[tuple[BlobHash, bytes, bytes, int]],
               observe: Callable[[bytes], None] | None = None) -> list[int]:
    """Store each (digest, raw bytes, framed bytes, compression) unless present, for one more turn;
    returns the compression of each stored copy (a blob already stored keeps its own).

    Lookups hold the GIL, puts release it; the new blobs go in one ``putmulti``, so the writer
    releases it once here rather than once a blob (see :meth:`cxdb.codec.BlobCodec.encode_all`)."""
    txn, db = w.txn, w.dbs.blobs
    compressions = []
    new: dict[bytes, tuple[bytes, int]] = {}
    stored_bytes = raw_bytes = 0
    for digest, raw, framed, compression in entries:
        if digest in new:
            w.counters.add("dedup_hits")
            add_blob(w, digest, 1, len(new[digest][0]))
            compressions.append(new[digest][1])
            continue
        stored = txn.get(digest, db=db)
        if stored is not None:
            compressions.append(_again(w, digest, stored))
            continue
        new[digest] = (framed, compression)  # named by one turn: no count (see .refs)
        stored_bytes += len(framed)
        raw_bytes += len(raw)
        if observe is not None:
            observe(raw)
        compressions.append(compression)
    if new:
        txn.cursor(db=db).putmulti([(digest, framed) for digest, (framed, _) in new.items()])
        w.counters.add("dedup_misses", len(new))
        w.counters.add("blobs", len(new))
        w.counters.add("blob_stored", stored_bytes)
        w.counters.add("blob_raw", raw_bytes)
    return compressions


def _again(w: WriteContext, digest: BlobHash, stored: Any) -> int:
    """A dedup hit: one more reference to a stored blob."""
    w.counters.add("dedup_hits")
    add_blob(w, digest, 1, len(stored))
    return BlobCodec.header(stored)[0]


def get_stored(txn: Any, blobs_db: Any, digest: bytes) -> bytes | None:
    """The framed bytes stored under ``digest``, or None."""
    value = txn.get(digest, db=blobs_db)
    return bytes(value) if value is not None else None
