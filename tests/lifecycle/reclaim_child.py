"""Reclaims a store in small steps, printing a line after each; the crash test SIGKILLs it mid-way."""

from __future__ import annotations

import asyncio
import sys

from cxdb.config import Settings
from cxdb.storage import open_backend


async def main(url: str) -> None:
    store = open_backend(Settings(store=url))
    await store.start()
    print("ready", flush=True)
    while (await store.reclaim(7)).more:
        print("step", flush=True)
    print("done", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
