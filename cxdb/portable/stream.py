"""Bytes to lines and back, zstd-compressed or not: what export and import read and write.

An export compressed with zstd (``.jsonl.zst``) is recognized by its first four bytes, so an import
takes either without being told.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import orjson
import zstandard

from .format import MAX_LINE_BYTES, ZSTD_MAGIC, BadExport

__all__ = ["Compressor", "file_chunks", "header_of", "lines"]

CHUNK = 256 * 1024
SLICE = 1024


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a stream of chunks (plain or zstd), each without its newline; a line longer than
    :data:`MAX_LINE_BYTES` is refused (BadExport), so memory stays bounded. Compressed input is fed to
    the decompressor :data:`SLICE` bytes at a time: zstd can expand a few bytes into a 128 KiB block,
    so this bounds what one slice can turn into (some tens of MiB) however the input was made."""
    decompressor: zstandard.ZstdDecompressionObj | None = None
    first = True
    held = bytearray()
    number = 0
    async for chunk in chunks:
        if first and chunk:
            first = False
            if chunk[:4] == ZSTD_MAGIC:
                decompressor = zstandard.ZstdDecompressor().decompressobj()
        pieces = [chunk] if decompressor is None else (chunk[at:at + SLICE] for at in range(0, len(chunk), SLICE))
        for piece in pieces:
            if decompressor is not None:
                try:
                    piece = decompressor.decompress(piece)
                except zstandard.ZstdError as exc:
                    raise BadExport(number + 1, f"the zstd stream is corrupted: {exc}") from exc
            start = 0
            while True:
                end = piece.find(b"\n", start)
                if end < 0:
                    held += piece[start:]
                    break
                held += piece[start:end]
                number += 1
                yield bytes(held)
                held.clear()
                start = end + 1
            if len(held) > MAX_LINE_BYTES:
                raise BadExport(number + 1, f"a line longer than {MAX_LINE_BYTES} bytes")
    if held:
        yield bytes(held)  # no final newline: the importer finds out whether the file is whole


def header_of(path: str) -> dict[str, Any] | None:
    """The header of the export in a file (plain or zstd), or None when it has none that reads."""
    try:
        with open(path, "rb") as source:
            if source.read(4) == ZSTD_MAGIC:
                source.seek(0)
                reader = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(source))
                first = reader.readline(1 << 20)
            else:
                source.seek(0)
                first = source.readline(1 << 20)
        header = orjson.loads(first)
    except (OSError, orjson.JSONDecodeError, zstandard.ZstdError):
        return None
    return header if isinstance(header, dict) else None


async def file_chunks(source: BinaryIO) -> AsyncIterator[bytes]:
    """A file's bytes, a chunk at a time."""
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return
        yield chunk


class Compressor:
    """Lines to bytes: as they are, or as one zstd frame written a chunk at a time."""

    def __init__(self, compress: bool, level: int = 3) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level).compressobj() if compress else None

    def feed(self, data: bytes) -> bytes:
        return self._compressor.compress(data) if self._compressor is not None else data

    def finish(self) -> bytes:
        return self._compressor.flush() if self._compressor is not None else b""
