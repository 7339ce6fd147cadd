"""Compression dictionaries, trained on the store's own payloads.

Every backend shows each new payload it stores to a :class:`DictionaryTrainer`. Once it has seen
enough, a background thread trains a zstd dictionary from a sample of them and hands it back to the
backend, which stores it in the database under a new id and then compresses new blobs with it.
Blobs written before keep their own framing, and a dictionary is never deleted, so every blob stays
readable (the frame names its dictionary; see :mod:`cxdb.codec`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zstandard

__all__ = ["DictionaryTrainer"]

log = logging.getLogger("cxdb.storage")


class DictionaryTrainer:
    """Collects new payloads as the backend stores them, and trains dictionaries on a thread of its own.

    The first dictionary is trained after ``threshold`` new blobs, and a fresh
    one after every ``retrain_every`` new blobs since, so the dictionary follows
    what the store holds. ``keep`` is handed each trained dictionary, on the training thread: the
    backend stores it, and once that has committed, makes its codec compress with it.
    """

    SAMPLE_BYTES = 4096
    """Each sample keeps at most this prefix of its payload: a dictionary learns from the common
    beginnings of payloads, and a few KiB of each is what zstd's trainer uses well. With the
    threshold's number of samples, the trainer holds at most ``threshold * SAMPLE_BYTES`` bytes,
    whatever the payloads' sizes."""

    def __init__(self, keep: Callable[[bytes], None], threshold: int = 2000, size: int = 64 * 1024,
                 retrain_every: int = 200_000) -> None:
        self._keep = keep
        self._threshold = threshold
        self._size = size
        self._retrain_every = retrain_every
        self._samples: list[bytes] = []
        self._seen = 0
        self._next_at = threshold
        self._thread: threading.Thread | None = None
        self._closed = False

    def observe(self, raw: bytes) -> None:
        """Note a new payload; may start training. Called from one thread at a time."""
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

        try:
            self._keep(data)
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
