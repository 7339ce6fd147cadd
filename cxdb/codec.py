"""Byte-level codecs: blob framing with zstd, content hashing, msgpack.

Pure: no I/O, no clock, no globals. A :class:`BlobCodec` is an injected object,
kept apart from the store's index, so the framing can be tested on its own.

Stored blob layout (the value under a blob's hash)::

    offset  size  field
    0       1     compression: 0 = raw, 1 = zstd
    1       4     uncompressed length, u32 big-endian
    5       ...   the payload, raw or a zstd frame
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import blake3
import msgpack
import zstandard

from .errors import Corrupt, Unprocessable
from .model import COMPRESSION_NONE, COMPRESSION_ZSTD, BlobHash

__all__ = ["HASH_NAME", "BlobCodec", "content_hash", "pack", "unpack"]

HASH_NAME = "blake3-256"
CODEC_NAME = "zstd-3"
_HEADER = struct.Struct(">BI")
MIN_COMPRESS = 128
MAX_BLOB = (1 << 32) - 1


def content_hash(raw: bytes) -> BlobHash:
    """BLAKE3-256 of the uncompressed bytes: a blob's key."""
    return BlobHash(blake3.blake3(raw).digest())


class BlobCodec:
    """Frames blobs for storage: zstd level 3 when that pays, raw otherwise.

    zstd contexts are not thread-safe, so each thread gets its own compressor
    and decompressor.
    """

    def __init__(self, level: int = 3, min_compress: int = MIN_COMPRESS) -> None:
        self._level = level
        self._min_compress = min_compress
        self._local = threading.local()

    def encode(self, raw: bytes) -> tuple[bytes, int]:
        """Frame ``raw`` for storage; returns the stored bytes and the compression used."""
        if len(raw) > MAX_BLOB:
            raise Unprocessable("payload too large for one blob", {"bytes": len(raw)})
        if len(raw) >= self._min_compress:
            compressor = getattr(self._local, "c", None)
            if compressor is None:
                compressor = self._local.c = zstandard.ZstdCompressor(level=self._level)
            packed = compressor.compress(raw)
            if len(packed) < len(raw):
                return _HEADER.pack(COMPRESSION_ZSTD, len(raw)) + packed, COMPRESSION_ZSTD
        return _HEADER.pack(COMPRESSION_NONE, len(raw)) + raw, COMPRESSION_NONE

    def decode(self, stored: bytes | memoryview) -> bytes:
        """The uncompressed bytes of a stored blob; Corrupt when they do not decode."""
        compression, length = self.header(stored)
        body = bytes(stored[_HEADER.size:])
        if compression == COMPRESSION_NONE:
            raw = body
        else:
            decompressor = getattr(self._local, "d", None)
            if decompressor is None:
                decompressor = self._local.d = zstandard.ZstdDecompressor()
            try:
                raw = decompressor.decompress(body, max_output_size=length)
            except zstandard.ZstdError as exc:
                raise Corrupt("blob does not decompress", {"reason": str(exc)}) from exc
        if len(raw) != length:
            raise Corrupt("blob length does not match its header", {"expected": length, "got": len(raw)})
        return raw

    @staticmethod
    def header(stored: bytes | memoryview) -> tuple[int, int]:
        """The (compression, uncompressed length) recorded in a stored blob."""
        if len(stored) < _HEADER.size:
            raise Corrupt("blob shorter than its header", {"bytes": len(stored)})
        compression, length = _HEADER.unpack_from(stored)
        if compression not in (COMPRESSION_NONE, COMPRESSION_ZSTD):
            raise Corrupt("unknown blob compression", {"compression": compression})
        return int(compression), int(length)


def pack(value: Any) -> bytes:
    """msgpack bytes for a JSON-like value; Unprocessable when it cannot be packed."""
    try:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]
    except (OverflowError, TypeError, ValueError) as exc:
        raise Unprocessable("value cannot be encoded as msgpack", {"reason": str(exc)}) from exc


def unpack(raw: bytes) -> Any:
    """Decode msgpack bytes; Corrupt when they are not one complete msgpack value."""
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise Corrupt("payload is not valid msgpack", {"reason": str(exc)}) from exc
