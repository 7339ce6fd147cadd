"""In-process durable appends/s: group commit with 32 producers vs one transaction per append."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import lmdb
import msgpack

from cxdb.storage import Store

from .common import message


async def group_commit(path: Path, total: int, producers: int = 32, contexts: int = 64) -> tuple[float, float]:
    """(appends/s, mean batch size) with ``producers`` concurrent appenders."""
    with Store(path) as store:
        ids = [(await store.create_context()).context_id for _ in range(contexts)]
        payloads = [msgpack.packb(message(i)) for i in range(total)]
        per = total // producers
        batches0, ops0 = store.writer_stats
        start = time.perf_counter()

        async def produce(k: int) -> None:
            for i in range(per):
                await store.append(ids[(k + i) % contexts], "bench.Message", 1, payloads[k * per + i])

        await asyncio.gather(*(produce(k) for k in range(producers)))
        elapsed = time.perf_counter() - start
        batches, ops = store.writer_stats
        return per * producers / elapsed, (ops - ops0) / max(1, batches - batches0)


def one_txn_per_append(path: Path, total: int) -> float:
    """The naive design: a plain LMDB write transaction (one fsync) per append."""
    env = lmdb.open(str(path), map_size=1 << 30, max_dbs=4)
    turns = env.open_db(b"turns")
    payloads = [msgpack.packb(message(i)) for i in range(total)]
    start = time.perf_counter()
    for i, raw in enumerate(payloads):
        with env.begin(write=True) as txn:
            txn.put(i.to_bytes(8, "big"), raw, db=turns)
    elapsed = time.perf_counter() - start
    env.close()
    return total / elapsed


def run(quick: bool = False) -> dict[str, float]:
    total = 8_000 if quick else 40_000
    with tempfile.TemporaryDirectory() as tmp:
        rate, batch = asyncio.run(group_commit(Path(tmp) / "gc", total))
        naive = one_txn_per_append(Path(tmp) / "naive", 300 if quick else 1000)
    return {"group_commit_per_s": rate, "mean_batch": batch, "one_txn_per_s": naive}


if __name__ == "__main__":
    print(run())
