"""Byte-level codecs: blob framing with zstd, content hashing, msgpack.

Pure: no I/O, no clock, no globals. A :class:`BlobCodec` is an injected object,
kept apart from the store's index, so the framing can be tested on its own.

Stored blob layout (the value under a blob's hash)::

    offset  size  field
    0       1     compression: 0 = raw, 1 = zstd, 2 = zstd with a trained dictionary
    1       4     uncompressed length, u32 big-endian
    5       4     dictionary id, u32 big-endian (compression 2 only)
    5 or 9  ...   the payload, raw or a zstd frame

Small payloads compress poorly on their own; a dictionary trained on earlier
payloads of the same store (see :mod:`cxdb.storage.lmdb.dictionaries`) roughly
halves them again. Frames made with a dictionary omit zstd's own content
size, checksum and dictionary id, which the header already carries.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import blake3
import msgpack
import zstandard

from .errors import Corrupt, Unprocessable
from .model import COMPRESSION_DICT, COMPRESSION_NONE, COMPRESSION_ZSTD, BlobHash

__all__ = ["HASH_NAME", "BlobCodec", "UnknownDictionary", "content_hash", "pack", "unpack"]

HASH_NAME = "blake3-256"
CODEC_NAME = "zstd-3"
_HEADER = struct.Struct(">BI")
_DICT_ID = struct.Struct(">I")
MIN_COMPRESS = 128
MAX_BLOB = (1 << 32) - 1


class UnknownDictionary(Corrupt):
    """A blob names a dictionary this codec has not been given."""

    def __init__(self, dict_id: int) -> None:
        super().__init__("blob uses an unknown compression dictionary", {"dictionary_id": dict_id})
        self.dict_id = dict_id


def content_hash(raw: bytes) -> BlobHash:
    """BLAKE3-256 of the uncompressed bytes: a blob's key."""
    return BlobHash(blake3.blake3(raw).digest())


class BlobCodec:
    """Frames blobs for storage: zstd level 3 (with the current dictionary, if any) when that pays,
    raw otherwise.

    zstd contexts are not thread-safe, so each thread keeps its own compressors
    and decompressors, one per dictionary.
    """

    def __init__(self, level: int = 3, min_compress: int = MIN_COMPRESS) -> None:
        self._level = level
        self._min_compress = min_compress
        self._local = threading.local()
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._current = 0

    # -- dictionaries ------------------------------------------------------

    def add_dictionary(self, dict_id: int, data: bytes, use: bool = False) -> None:
        """Make a dictionary known for decoding, and with ``use`` the one new blobs are compressed with."""
        self._dicts[dict_id] = zstandard.ZstdCompressionDict(data)
        if use:
            self._current = dict_id

    @property
    def current_dictionary(self) -> int:
        """The id of the dictionary new blobs use; 0 for none."""
        return self._current

    def _tools(self) -> tuple[dict[int, Any], dict[int, Any]]:
        local = self._local
        if not hasattr(local, "c"):
            local.c, local.d = {}, {}
        return local.c, local.d

    def _compressor(self, dict_id: int) -> Any:
        compressors, _ = self._tools()
        found = compressors.get(dict_id)
        if found is None:
            if dict_id:
                found = zstandard.ZstdCompressor(level=self._level, dict_data=self._dicts[dict_id],
                                                 write_content_size=False, write_checksum=False,
                                                 write_dict_id=False)
            else:
                found = zstandard.ZstdCompressor(level=self._level)
            compressors[dict_id] = found
        return found

    def _decompressor(self, dict_id: int) -> Any:
        _, decompressors = self._tools()
        found = decompressors.get(dict_id)
        if found is None:
            if dict_id and dict_id not in self._dicts:
                raise UnknownDictionary(dict_id)
            found = zstandard.ZstdDecompressor(dict_data=self._dicts[dict_id]) if dict_id else \
                zstandard.ZstdDecompressor()
            decompressors[dict_id] = found
        return found

    # -- framing -----------------------------------------------------------

    def encode(self, raw: bytes) -> tuple[bytes, int]:
        """Frame ``raw`` for storage; returns the stored bytes and the compression used."""
        return self.encode_all([raw])[0]

    def encode_all(self, raws: Sequence[bytes]) -> list[tuple[bytes, int]]:
        """:meth:`encode` each of ``raws``, compressing them in one call where zstd offers it.

        Every zstd call releases the GIL, and a thread that releases it while another runs Python
        may wait for it up to the switch interval (5 ms): a hundred small payloads compressed one by
        one stalled an append batch far longer than compressing them took."""
        for raw in raws:
            if len(raw) > MAX_BLOB:
                raise Unprocessable("payload too large for one blob", {"bytes": len(raw)})
        dict_id = self._current
        compressor = self._compressor(dict_id)
        wanted = [raw for raw in raws if len(raw) >= self._min_compress]
        packed: Iterator[bytes]
        if len(wanted) > 1 and hasattr(compressor, "multi_compress_to_buffer"):
            buffers = compressor.multi_compress_to_buffer(wanted, threads=0)
            packed = (buffers[index].tobytes() for index in range(len(wanted)))
        else:
            packed = (compressor.compress(raw) for raw in wanted)
        return [self._frame(raw, next(packed) if len(raw) >= self._min_compress else None, dict_id) for raw in raws]

    @staticmethod
    def _frame(raw: bytes, packed: bytes | None, dict_id: int) -> tuple[bytes, int]:
        if packed is not None:
            if dict_id and len(packed) + _DICT_ID.size < len(raw):
                return _HEADER.pack(COMPRESSION_DICT, len(raw)) + _DICT_ID.pack(dict_id) + packed, COMPRESSION_DICT
            if not dict_id and len(packed) < len(raw):
                return _HEADER.pack(COMPRESSION_ZSTD, len(raw)) + packed, COMPRESSION_ZSTD
        return _HEADER.pack(COMPRESSION_NONE, len(raw)) + raw, COMPRESSION_NONE

    def decode(self, stored: bytes | memoryview) -> bytes:
        """The uncompressed bytes of a stored blob; Corrupt when they do not decode."""
        compression, length = self.header(stored)
        if compression == COMPRESSION_NONE:
            raw = bytes(stored[_HEADER.size:])
        else:
            dict_id = 0
            start = _HEADER.size
            if compression == COMPRESSION_DICT:
                if len(stored) < start + _DICT_ID.size:
                    raise Corrupt("blob shorter than its header", {"bytes": len(stored)})
                dict_id = _DICT_ID.unpack_from(stored, start)[0]
                start += _DICT_ID.size
            try:
                raw = self._decompressor(dict_id).decompress(bytes(stored[start:]), max_output_size=length)
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
        if compression not in (COMPRESSION_NONE, COMPRESSION_ZSTD, COMPRESSION_DICT):
            raise Corrupt("unknown blob compression", {"compression": compression})
        return int(compression), int(length)


_packers = threading.local()


def pack(value: Any) -> bytes:
    """msgpack bytes for a JSON-like value; Unprocessable when it cannot be packed.

    Each thread reuses one Packer: ``msgpack.packb`` makes a new one per call, and its 256 KiB buffer
    comes from ``mmap`` each time, which under a busy writer thread cost a fifth of a batch append."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except (OverflowError, TypeError, ValueError) as exc:
        packer.reset()  # a failed pack leaves a partial value in the buffer
        raise Unprocessable("value cannot be encoded as msgpack", {"reason": str(exc)}) from exc


def unpack(raw: bytes) -> Any:
    """Decode msgpack bytes; Corrupt when they are not one complete msgpack value."""
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise Corrupt("payload is not valid msgpack", {"reason": str(exc)}) from exc
