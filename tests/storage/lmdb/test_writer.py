"""The writer's group commit against a real LMDB: a failing operation fails alone, whatever it wrote."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxdb.errors import Conflict, StoreError
from cxdb.storage.lmdb.counters import read_one
from cxdb.storage.lmdb.env import Environment
from cxdb.storage.lmdb.writer import WriteContext, Writer


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Environment]:
    environment = Environment(tmp_path / "data")
    yield environment
    environment.close()


def key(name: str) -> bytes:
    return b"test:" + name.encode()


class Ops:
    """Operations that record how often they ran and write one key each."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.release = threading.Event()

    def blocker(self, w: WriteContext) -> None:
        """Holds the writer until the rest of a batch is queued behind it."""
        self.calls["blocker"] += 1
        assert self.release.wait(10)

    def good(self, name: str) -> Callable[[WriteContext], str]:
        def op(w: WriteContext) -> str:
            self.calls[name] += 1
            w.txn.put(key(name), b"1", db=w.dbs.meta)
            w.counters.add("turns")
            return name
        return op

    def fails_after_writing(self, name: str, error: Exception) -> Callable[[WriteContext], None]:
        def op(w: WriteContext) -> None:
            self.calls[name] += 1
            w.txn.put(key(name), b"1", db=w.dbs.meta)
            w.counters.add("turns", 1000)
            raise error
        return op


def one_batch(writer: Writer, ops: Ops, *fns: Callable[[WriteContext], Any]) -> list[Any]:
    """Run ``fns`` in one batch, behind a blocker; each result or exception, in order."""
    ops.release.clear()
    first = writer.submit(ops.blocker)
    futures = [writer.submit(fn) for fn in fns]
    ops.release.set()
    first.result(10)
    outcomes: list[Any] = []
    for future in futures:
        try:
            outcomes.append(future.result(10))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def stored(env: Environment, *names: str) -> dict[str, bool]:
    with env.read() as txn:
        return {name: txn.get(key(name), db=env.dbs.meta) is not None for name in names}


def turns_counter(env: Environment) -> int:
    with env.read() as txn:
        return read_one(txn, env.dbs.meta, "turns")


@pytest.mark.parametrize("error", [Conflict("no such parent"), ValueError("a bug")], ids=["conflict", "bug"])
def test_an_operation_that_fails_after_writing_keeps_nothing(env: Environment, error: Exception) -> None:
    writer = Writer(env, careful=2)
    ops = Ops()
    try:
        outcomes = one_batch(writer, ops, ops.good("a"), ops.fails_after_writing("bad", error), ops.good("b"))
        assert outcomes[0] == "a" and outcomes[2] == "b"
        expected = Conflict if isinstance(error, Conflict) else StoreError
        assert isinstance(outcomes[1], expected)
        assert stored(env, "a", "bad", "b") == {"a": True, "bad": False, "b": True}
        assert turns_counter(env) == 2
    finally:
        writer.close()


def test_a_failure_costs_one_rerun_then_batches_run_carefully(env: Environment) -> None:
    writer = Writer(env, careful=2)
    ops = Ops()
    try:
        for round_ in range(4):
            names = (f"g{round_}", f"x{round_}")
            one_batch(writer, ops, ops.good(names[0]), ops.fails_after_writing(names[1], Conflict("no")))
            assert stored(env, *names) == {names[0]: True, names[1]: False}
        # Batch 0 ran straight, failed, and ran again carefully: every operation twice. The next two
        # (careful=2) ran carefully from the start: once. Then straight again, so twice.
        assert [ops.calls[f"g{r}"] for r in range(4)] == [2, 1, 1, 2]
        assert turns_counter(env) == 4
        # A batch where nothing fails runs once.
        one_batch(writer, ops, ops.good("ok1"), ops.good("ok2"))
        assert ops.calls["ok1"] == ops.calls["ok2"] == 1
    finally:
        writer.close()
