"""Payloads framed for storage (compressed, when that pays) for a batch of appends or a restore: in
one zstd call (:meth:`cxdb.codec.BlobCodec.encode_all`), on the event loop for a small batch and on
the default executor for a large one, which would hold the event loop up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ...codec import BlobCodec

__all__ = ["INLINE_ENCODE_BYTES", "frame"]

INLINE_ENCODE_BYTES = 64 * 1024
"""Payload bytes of one write framed on the caller's thread; larger writes go to the executor."""


async def frame(codec: BlobCodec, payloads: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Each payload's stored bytes and compression (:meth:`cxdb.codec.BlobCodec.encode`)."""
    if sum(len(raw) for raw in payloads) <= INLINE_ENCODE_BYTES:
        return codec.encode_all(payloads)
    return await asyncio.get_running_loop().run_in_executor(None, codec.encode_all, payloads)
