"""Compression dictionaries in the LMDB store.

In ``meta``: key ``b"d:"`` + dictionary id (u32 BE) -> the zstd dictionary's bytes; counter
``dicts`` is the last id given out and ``dict_current`` the one new blobs are compressed with (0:
none). The trainer (:mod:`cxdb.storage.dictionaries`) hands a trained dictionary to :func:`keeper`'s
write operation.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from ...codec import BlobCodec
from .writer import WriteContext

__all__ = ["keeper", "load_all", "load_one"]

_PREFIX = b"d:"
_ID = struct.Struct(">I")


def _key(dict_id: int) -> bytes:
    return _PREFIX + _ID.pack(dict_id)


def load_one(txn: Any, meta_db: Any, dict_id: int) -> bytes | None:
    value = txn.get(_key(dict_id), db=meta_db)
    return bytes(value) if value is not None else None


def load_all(txn: Any, meta_db: Any) -> Iterator[tuple[int, bytes]]:
    cursor = txn.cursor(db=meta_db)
    if not cursor.set_range(_PREFIX):
        return
    for key, value in cursor:
        if not key.startswith(_PREFIX):
            return
        yield _ID.unpack_from(key, len(_PREFIX))[0], bytes(value)


def keeper(codec: BlobCodec, submit: Callable[[Callable[[WriteContext], None]], Any]) -> Callable[[bytes], None]:
    """What the trainer calls with a new dictionary: a write that stores it under the next id and makes
    it the current one; once committed, the codec compresses new blobs with it."""

    def keep(data: bytes) -> None:
        def store(w: WriteContext) -> None:
            dict_id = w.counters.add("dicts")
            w.txn.put(_key(dict_id), data, db=w.dbs.meta)
            w.counters.add("dict_current", dict_id - w.counters.get("dict_current"))
            w.after_commit.append(lambda: codec.add_dictionary(dict_id, data, use=True))

        submit(store)

    return keep
