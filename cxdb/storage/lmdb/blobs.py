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

from collections.abc import Callable
from typing import Any

from ...codec import BlobCodec
from ...model import BlobHash
from .refs import add_blob
from .writer import WriteContext

__all__ = ["get_stored", "put"]


def put(w: WriteContext, codec: BlobCodec, digest: BlobHash, raw: bytes,
        observe: Callable[[bytes], None] | None = None) -> int:
    """Store ``raw`` under ``digest`` unless present, for one more turn; returns the compression of
    the stored copy.

    Compression runs here, in the writer thread, and only for new blobs: zstd
    releases the GIL, so it overlaps with the event loop serving requests.
    """
    stored = w.txn.get(digest, db=w.dbs.blobs)
    if stored is not None:
        w.counters.add("dedup_hits")
        add_blob(w, digest, 1, len(stored))
        return BlobCodec.header(stored)[0]
    framed, compression = codec.encode(raw)
    w.txn.put(digest, framed, db=w.dbs.blobs)  # named by one turn: no count to write (see .refs)
    if observe is not None:
        observe(raw)
    w.counters.add("dedup_misses")
    w.counters.add("blobs")
    w.counters.add("blob_stored", len(framed))
    w.counters.add("blob_raw", len(raw))
    return compression


def get_stored(txn: Any, blobs_db: Any, digest: bytes) -> bytes | None:
    """The framed bytes stored under ``digest``, or None."""
    value = txn.get(digest, db=blobs_db)
    return bytes(value) if value is not None else None
