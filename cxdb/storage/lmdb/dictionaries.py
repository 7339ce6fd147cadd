"""Compression dictionaries, trained on the store's own payloads.

In ``meta``: key ``b"d:"`` + dictionary id (u32 BE) -> the zstd dictionary's
bytes; counter ``dicts`` is the last id given out and ``dict_current`` the one
new blobs are compressed with (0: none).

The writer thread shows each new payload to a :class:`DictionaryTrainer`. Once
it has seen enough, a background thread trains a dictionary from a sample of
them and hands it to the writer as an ordinary write operation; after that
commit, new blobs use it. Blobs written before keep their own framing, and a
dictionary is never deleted, so every blob stays readable.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

from ...codec import BlobCodec
from .writer import WriteContext

__all__ = ["DictionaryTrainer", "load_all", "load_one"]

log = logging.getLogger("cxdb.storage")
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


class DictionaryTrainer:
    """Collects payloads in the writer thread and trains dictionaries off it.

    The first dictionary is trained after ``threshold`` new blobs, and a fresh
    one after every ``retrain_every`` new blobs since, so the dictionary follows
    what the store holds. ``submit`` queues a write operation.
    """

    SAMPLE_BYTES = 4096
    """Each sample keeps at most this prefix of its payload: a dictionary learns from the common
    beginnings of payloads, and a few KiB of each is what zstd's trainer uses well. With the
    threshold's number of samples, the trainer holds at most ``threshold * SAMPLE_BYTES`` bytes,
    whatever the payloads' sizes."""

    def __init__(self, codec: BlobCodec, submit: Callable[[Callable[[WriteContext], None]], Any],
                 threshold: int = 2000, size: int = 64 * 1024, retrain_every: int = 200_000) -> None:
        self._codec = codec
        self._submit = submit
        self._threshold = threshold
        self._size = size
        self._retrain_every = retrain_every
        self._samples: list[bytes] = []
        self._seen = 0
        self._next_at = threshold
        self._thread: threading.Thread | None = None
        self._closed = False

    def observe(self, raw: bytes) -> None:
        """Note a new payload; may start training. Called in the writer thread only."""
        self._seen += 1
        sample = raw[:self.SAMPLE_BYTES] if len(raw) > self.SAMPLE_BYTES else raw
        if len(self._samples) < self._threshold:
            self._samples.append(sample)
        elif self._seen % 7 == 0:  # keep a spread of later payloads too
            self._samples[self._seen % self._threshold] = sample
        if self._seen >= self._next_at and self._thread is None and not self._closed:
            self._next_at = self._seen + self._retrain_every
            samples, self._samples = self._samples, []
            self._thread = threading.Thread(target=self._train, args=(samples,), name="cxdb-dict", daemon=True)
            self._thread.start()

    def _train(self, samples: list[bytes]) -> None:
        try:
            data = zstandard.train_dictionary(self._size, list[bytes | bytearray | memoryview](samples),
                                              level=3).as_bytes()
        except zstandard.ZstdError as exc:
            log.info("compression dictionary not trained: %s", exc)
            self._thread = None
            return

        def store(w: WriteContext) -> None:
            dict_id = w.counters.add("dicts")
            w.txn.put(_key(dict_id), data, db=w.dbs.meta)
            w.counters.add("dict_current", dict_id - w.counters.get("dict_current"))
            w.after_commit.append(lambda: self._codec.add_dictionary(dict_id, data, use=True))

        try:
            self._submit(store)
        except Exception:  # the store closed while we trained; the dictionary is simply not kept
            log.debug("compression dictionary dropped", exc_info=True)
        self._thread = None

    @property
    def sample_bytes(self) -> int:
        """Bytes of payload the trainer holds now."""
        return sum(len(sample) for sample in self._samples)

    def close(self) -> None:
        """Wait for a training in progress; start no more."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            thread.join()
