"""``cxdb compact``: give an LMDB store's free pages back to the filesystem.

LMDB reuses the pages reclamation frees, so a store stops growing under churn, but its file never
shrinks. Compaction writes a compacted copy (py-lmdb's compacting copy) beside the store, verifies
it with :meth:`~cxdb.storage.lmdb.store.Store.check` and against the original's counters, and only
then swaps it in with one atomic rename; the old file is kept (as ``data.mdb.pre-compact``, a second
link to it) until the swap is done. A crash at any point leaves either the old file or the new one
in place, whole. The store's open lock (:func:`~cxdb.storage.lmdb.env.hold_open_lock`) is held
exclusively throughout, so no server has the store open meanwhile.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ...errors import StoreError
from .env import hold_open_lock
from .store import Store

__all__ = ["compact"]

_OLD = "data.mdb.pre-compact"


def _sync(path: Path) -> None:
    """fsync a file, or a directory's entries."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compact(path: Path) -> dict[str, Any]:
    """Compact the store at ``path`` in place: its size before and after, and the check's counts."""
    if not (path / "data.mdb").is_file():
        raise StoreError(f"no cxdb store at {path.resolve()}", {"path": str(path.resolve())})
    fd = hold_open_lock(path, exclusive=True)
    try:
        work = path / ".compact"
        shutil.rmtree(work, ignore_errors=True)  # left by a compaction that did not finish
        (path / _OLD).unlink(missing_ok=True)
        before = (path / "data.mdb").stat().st_size
        with Store(path, readonly=True, open_lock=False) as store:
            original = store.stats()
            store.backup(work)
        with Store(work, readonly=True, open_lock=False) as copy:
            report = copy.check()
            copied = copy.stats()
        same = (original.contexts, original.turns, original.blobs) == (copied.contexts, copied.turns, copied.blobs)
        if not report["ok"] or not same:
            shutil.rmtree(work, ignore_errors=True)
            raise StoreError("the compacted copy did not verify; the store is unchanged",
                             {"problems": report["problems"][:5], "counts": report["counts"]})
        _sync(work / "data.mdb")  # durable before it takes the old file's place
        os.link(path / "data.mdb", path / _OLD)
        os.replace(work / "data.mdb", path / "data.mdb")
        _sync(path)
        (path / _OLD).unlink()
        shutil.rmtree(work, ignore_errors=True)
        return {"before_bytes": before, "after_bytes": (path / "data.mdb").stat().st_size,
                "counts": report["counts"]}
    finally:
        if fd is not None:
            os.close(fd)
