"""Appends forever, printing each acknowledged turn; the crash test SIGKILLs it."""

from __future__ import annotations

import asyncio
import os
import sys

import msgpack

from cxdb.storage import Store


async def main(path: str) -> None:
    store = Store(path)
    context = await store.create_context()
    out = sys.stdout

    async def producer(k: int) -> None:
        i = 0
        while True:
            raw = msgpack.packb({"k": k, "i": i, "pad": os.urandom(64 + (i % 300))})
            result = await store.append(context.context_id, "crash", 1, raw)
            out.write(f"{result.turn.turn_id} {result.turn.content_hash.hex()} {context.context_id}\n")
            out.flush()
            i += 1

    print("ready", flush=True)
    await asyncio.gather(*(producer(k) for k in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
