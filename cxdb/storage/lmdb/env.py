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
``events``     :mod:`.events`              the event log
``heads``      :mod:`.heads`               head history
``refs``       :mod:`.refs`                turn reference counts
``blobrefs``   :mod:`.refs`                blob reference counts
``garbage``    :mod:`.refs`                what reclamation has to do
``expiry``     :mod:`.lifecycle`           history and keys by age
=============  ==========================  =====================

``meta`` key ``b"format"`` holds the format parameters as JSON. They are
written when the store is created and compared on every open; a mismatch is a
:class:`~cxdb.errors.FormatMismatch`, never silent misreading. A store of an older
format opens with :attr:`Environment.upgrade` set to its version, and the store
brings it up to date before it serves (see :meth:`Environment.upgraded`): format 1
lacks ``tagact``, ``ctxtag`` and ``counts``, which are built; format 2 lacks the
event log, which starts empty; format 3 lacks the head history, which starts empty; format 4 lacks
the reference counts and the expiry index, which are built (:func:`.lifecycle.build`).
Each new format keeps a build that predates a sub-database from writing to the store
without keeping it up to date.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import orjson

from ...codec import CODEC_NAME, HASH_NAME
from ...errors import FormatMismatch, StoreClosed, StoreError, StoreFull

__all__ = ["FORMAT", "OPEN_LOCK", "Dbs", "Environment", "hold_open_lock", "no_space"]

FORMAT: dict[str, Any] = {"format_version": 5, "hash": HASH_NAME, "codec": CODEC_NAME, "int_keys": "u64be"}
_UPGRADABLE = tuple({**FORMAT, "format_version": version} for version in (1, 2, 3, 4))
_DB_NAMES = ("meta", "blobs", "turns", "contexts", "ctxmeta", "activity", "tags", "children", "idem",
             "bundles", "bundleseq", "tagact", "ctxtag", "counts", "events", "heads", "refs", "blobrefs", "garbage",
             "expiry")
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
    events: Any
    heads: Any
    refs: Any
    blobrefs: Any
    garbage: Any
    expiry: Any


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


LOW_SPACE_BYTES = 4 * 1024 * 1024
"""Below this much free space, a failed write is taken to be a full disk."""


def no_space(path: Path) -> StoreFull:
    where = str(path.resolve())
    return StoreFull(f"no space left on device at {where}", {"data_dir": where})


def _no_space(path: Path, exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        stat = os.statvfs(path if path.exists() else path.parent)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < LOW_SPACE_BYTES


OPEN_LOCK = "cxdb.lock"
"""Every process with the store open holds a shared ``flock`` on this file; ``cxdb compact`` takes it
exclusively, so it never swaps the data file under a running server (or a running server waits for
it to finish, then opens the compacted file)."""


def hold_open_lock(path: Path, exclusive: bool = False) -> int | None:
    """Take the store's open lock (shared, waiting for a compaction; or exclusive, never waiting): the
    descriptor to close to release it. None on a read-only copy, where no one can compact anyway.
    StoreError when ``exclusive`` and someone holds it."""
    try:
        fd = os.open(path / OPEN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT):
            return None
        raise StoreError("cannot open the store's lock file", {"path": str(path / OPEN_LOCK),
                                                                "reason": exc.strerror}) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreError(f"the store at {path.resolve()} is open in another process (a server?): stop it first",
                             {"path": str(path.resolve())}) from exc
        raise
    return fd


def _preallocate_lock(path: Path, max_readers: int, readonly: bool) -> None:
    """Give the lock file its blocks before LMDB maps it.

    LMDB extends a new lock file with ftruncate and maps it: on a full filesystem the first write
    to the mapping then kills the process with SIGBUS. Allocating the blocks first turns that into
    an ordinary ENOSPC here. The size is exactly the one LMDB would give it (a 64-byte slot per
    reader after the first, and a 192-byte header): LMDB reads the number of reader slots from the
    file's size, and every process sharing the store must see the same table. A lock file that
    exists already is left as it is.
    """
    lock = path / "lock.mdb"
    size = (max_readers - 1) * 64 + 192
    try:
        if lock.exists():
            return
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if readonly and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return  # a read-only copy: LMDB reads it without a lock file of its own
        if exc.errno == errno.ENOSPC:
            raise no_space(path) from exc
        raise StoreError("cannot open the store's lock file", {"path": str(lock), "reason": exc.strerror}) from exc
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(path) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
            raise StoreError("cannot allocate the store's lock file",
                             {"path": str(lock), "reason": exc.strerror}) from exc
    finally:
        os.close(fd)


class Environment:
    """An open LMDB environment with its sub-databases and persisted format.

    Readers use :meth:`read`; only the writer thread uses :meth:`begin_write`.
    """

    def __init__(self, path: Path, map_size: int = 1 << 33, max_readers: int = 1024, readonly: bool = False,
                 open_lock: bool = True) -> None:
        """Open (and, unless ``readonly``, create) the environment at ``path``.

        ``readonly`` opens an existing store only, and works on a read-only copy of one too. Without
        ``open_lock``, the caller holds the store's open lock itself (:func:`hold_open_lock`).
        """
        self.path = path
        self.readonly = readonly
        if readonly:
            if not (path / "data.mdb").is_file():
                raise StoreError(f"no cxdb store at {path.resolve()}", {"path": str(path.resolve())})
        else:
            path.mkdir(parents=True, exist_ok=True)
        self._open_fd = hold_open_lock(path) if open_lock and path.is_dir() else None
        try:
            _preallocate_lock(path, max_readers, readonly)
        except BaseException:
            self._release()
            raise
        try:
            self._env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_DB_NAMES) + 2,
                                  max_readers=max_readers, subdir=True, sync=True, metasync=True,
                                  readahead=False, lock=True, readonly=readonly, create=not readonly)
        except lmdb.Error as exc:
            self._release()
            if _no_space(path, exc):
                raise no_space(path) from exc
            raise StoreError("cannot open the store", {"path": str(path), "reason": str(exc)}) from exc
        self._gate = _Gate()
        self._closed = False
        self.upgrade = 0
        """The format version of an older store that :meth:`upgraded` brings up to date; 0 when current."""
        try:
            if not readonly:
                self._env.reader_check()
            self.dbs = Dbs(**{name: self._open_db(name) for name in _DB_NAMES})
            self._check_format()
        except BaseException:
            self._env.close()
            self._release()
            raise

    def _open_db(self, name: str) -> Any:
        try:
            return self._env.open_db(name.encode(), create=not self.readonly)
        except lmdb.NotFoundError as exc:  # read-only, and the store predates this sub-database
            raise StoreError(f"the store at {self.path.resolve()} is of an older format: start `cxdb serve` on "
                             "it once to upgrade it", {"path": str(self.path.resolve())}) from exc

    def disk_full(self, exc: BaseException) -> StoreFull | None:
        """The error to report when ``exc`` came from a full disk, else None.

        LMDB reports a write that found no space as an I/O error at commit, so the filesystem is
        asked: almost no space left means that is what happened.
        """
        return no_space(self.path) if _no_space(self.path, exc) else None

    def _check_format(self) -> None:
        with self._env.begin() as txn:
            stored = txn.get(b"format", db=self.dbs.meta)
        if stored is None:
            if self.readonly:
                raise StoreError(f"no cxdb store at {self.path.resolve()}", {"path": str(self.path.resolve())})
            with self._env.begin(write=True) as txn:
                stored = txn.get(b"format", db=self.dbs.meta)
                if stored is None:
                    txn.put(b"format", orjson.dumps(FORMAT), db=self.dbs.meta)
                    return
        found = orjson.loads(stored)
        if found in _UPGRADABLE:
            if self.readonly:
                raise StoreError(f"the store at {self.path.resolve()} is of an older format: start `cxdb serve` "
                                 "on it once to upgrade it", {"path": str(self.path.resolve())})
            self.upgrade = int(found["format_version"])
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
        self.upgrade = 0

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
            self._release()

    def _release(self) -> None:
        if self._open_fd is not None:
            os.close(self._open_fd)
            self._open_fd = None
