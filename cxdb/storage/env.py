"""The LMDB environment: named sub-databases, the persisted format, map growth.

This package is the only code that touches LMDB. One environment holds these
named sub-databases (the layout of each is documented in the module that owns it):

=============  ==========================  =====================
name           owner                       holds
=============  ==========================  =====================
``meta``       :mod:`.counters`, here      format parameters, counters
``blobs``      :mod:`.blobs`               content-addressed payloads
``turns``      :mod:`.turns`               immutable turn records
``contexts``   :mod:`.contexts`            head pointers
``ctxmeta``    :mod:`.contexts`            tag, provenance (written once)
``activity``   :mod:`.contexts`            newest-activity index
``tags``       :mod:`.contexts`            client-tag index
``children``   :mod:`.contexts`            fork lineage
``idem``       :mod:`.idempotency`         idempotency keys
``bundles``    :mod:`.bundles`             registry bundles
``bundleseq``  :mod:`.bundles`             publish order
``tagact``     :mod:`.contexts`            per-tag activity index
``ctxtag``     :mod:`.contexts`            each tagged context's tag
``counts``     :mod:`.contexts`            per-tag and per-parent totals
=============  ==========================  =====================

``meta`` key ``b"format"`` holds the format parameters as JSON. They are
written when the store is created and compared on every open; a mismatch is a
:class:`~cxdb.errors.FormatMismatch`, never silent misreading. A store of format
1 (before ``tagact``, ``ctxtag`` and ``counts``) opens with :attr:`Environment.upgrade`
set, and the store builds those indexes before it serves (see
:meth:`Environment.upgraded`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import orjson

from ..codec import CODEC_NAME, HASH_NAME
from ..errors import FormatMismatch, StoreClosed, StoreError, StoreFull

__all__ = ["FORMAT", "Dbs", "Environment"]

FORMAT: dict[str, Any] = {"format_version": 2, "hash": HASH_NAME, "codec": CODEC_NAME, "int_keys": "u64be"}
_UPGRADABLE = ({**FORMAT, "format_version": 1},)
_DB_NAMES = ("meta", "blobs", "turns", "contexts", "ctxmeta", "activity", "tags", "children", "idem",
             "bundles", "bundleseq", "tagact", "ctxtag", "counts")
MAX_MAP_SIZE = 1 << 44


@dataclass(frozen=True, slots=True)
class Dbs:
    """Handles of the named sub-databases."""

    meta: Any
    blobs: Any
    turns: Any
    contexts: Any
    ctxmeta: Any
    activity: Any
    tags: Any
    children: Any
    idem: Any
    bundles: Any
    bundleseq: Any
    tagact: Any
    ctxtag: Any
    counts: Any


class _Gate:
    """Shared/exclusive gate: read transactions share it, a map resize takes it alone.

    LMDB requires that no transaction of this process is active while the map
    size changes. Resizes are rare, so readers pay two uncontended lock
    operations and the resizer waits for them to drain.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._resizing = False

    def enter_shared(self) -> None:
        while True:
            with self._lock:
                if not self._resizing:
                    self._readers += 1
                    return
            time.sleep(0.0001)

    def exit_shared(self) -> None:
        with self._lock:
            self._readers -= 1

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        while True:
            with self._lock:
                if not self._resizing:
                    self._resizing = True
                    break
            time.sleep(0.0001)
        try:
            while True:
                with self._lock:
                    if not self._readers:
                        break
                time.sleep(0.0001)
            yield
        finally:
            with self._lock:
                self._resizing = False


class _Read:
    """A read transaction as a context manager (cheaper than a generator-based one)."""

    __slots__ = ("_env", "_txn")

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._txn: Any = None

    def __enter__(self) -> Any:
        self._txn = self._env._begin_read()
        return self._txn

    def __exit__(self, *exc: object) -> None:
        self._txn.abort()
        self._env._gate.exit_shared()


class Environment:
    """An open LMDB environment with its sub-databases and persisted format.

    Readers use :meth:`read`; only the writer thread uses :meth:`begin_write`.
    """

    def __init__(self, path: Path, map_size: int = 1 << 33, max_readers: int = 1024) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_DB_NAMES) + 2,
                                  max_readers=max_readers, subdir=True, sync=True, metasync=True,
                                  readahead=False, lock=True)
        except lmdb.Error as exc:
            raise StoreError("cannot open the store", {"path": str(path), "reason": str(exc)}) from exc
        self._gate = _Gate()
        self._closed = False
        self.upgrade = False
        """The store is of an older format that :meth:`upgraded` brings up to date."""
        try:
            self._env.reader_check()
            self.dbs = Dbs(**{name: self._env.open_db(name.encode()) for name in _DB_NAMES})
            self._check_format()
        except BaseException:
            self._env.close()
            raise

    def _check_format(self) -> None:
        with self._env.begin() as txn:
            stored = txn.get(b"format", db=self.dbs.meta)
        if stored is None:
            with self._env.begin(write=True) as txn:
                stored = txn.get(b"format", db=self.dbs.meta)
                if stored is None:
                    txn.put(b"format", orjson.dumps(FORMAT), db=self.dbs.meta)
                    return
        found = orjson.loads(stored)
        if found in _UPGRADABLE:
            self.upgrade = True
            return
        if found != FORMAT:
            raise FormatMismatch("the data directory was written in another format",
                                 {"path": str(self.path), "expected": FORMAT, "found": found})

    def upgraded(self, build: Callable[[Any], None]) -> None:
        """Bring a store of an older format up to date: ``build`` writes what it lacks, in the same
        transaction that records the current format, so a crash leaves the old format whole."""
        with self._env.begin(write=True) as txn:
            build(txn)
            txn.put(b"format", orjson.dumps(FORMAT), db=self.dbs.meta)
        self.upgrade = False

    def read(self) -> _Read:
        """A short read transaction, as a context manager; never hold it across an ``await``."""
        return _Read(self)

    def _begin_read(self) -> Any:
        self._gate.enter_shared()
        try:
            if self._closed:
                raise StoreClosed("the store is closed")
            try:
                return self._env.begin(write=False, buffers=False)
            except lmdb.MapResizedError:
                self._adopt_grown_map()
                return self._env.begin(write=False, buffers=False)
        except BaseException:
            self._gate.exit_shared()
            raise

    def _adopt_grown_map(self) -> None:
        self._gate.exit_shared()
        try:
            with self._gate.exclusive():
                self._env.set_mapsize(0)
        finally:
            self._gate.enter_shared()

    def begin_write(self) -> Any:
        """A write transaction; only the writer thread calls this."""
        if self._closed:
            raise StoreClosed("the store is closed")
        try:
            return self._env.begin(write=True)
        except lmdb.MapResizedError:
            with self._gate.exclusive():
                self._env.set_mapsize(0)
            return self._env.begin(write=True)

    def begin_nested(self, parent: Any) -> Any:
        return self._env.begin(write=True, parent=parent)

    def grow(self) -> None:
        """Double the map after a MapFullError; StoreFull past the ceiling."""
        current = int(self._env.info()["map_size"])
        if current >= MAX_MAP_SIZE:
            raise StoreFull("the store reached its largest map size", {"map_size": current})
        with self._gate.exclusive():
            self._env.set_mapsize(min(current * 2, MAX_MAP_SIZE))

    def used_bytes(self) -> int:
        """Bytes of the data file in use: pages up to the last one written."""
        info = self._env.info()
        return (int(info["last_pgno"]) + 1) * int(self._env.stat()["psize"])

    def map_size(self) -> int:
        return int(self._env.info()["map_size"])

    def copy(self, dest: Path, compact: bool = True) -> None:
        """A consistent copy of the live environment into ``dest`` (a new directory)."""
        dest.mkdir(parents=True, exist_ok=False)
        self._env.copy(str(dest), compact=compact)

    def close(self) -> None:
        if self._closed:
            return
        with self._gate.exclusive():
            self._closed = True
            self._env.close()
