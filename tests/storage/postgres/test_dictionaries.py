"""Compression dictionaries on PostgreSQL: trained by one gateway, stored in the database, and read by
another gateway that started before they existed."""

from __future__ import annotations

import asyncio

import msgpack

from cxdb.model import COMPRESSION_DICT
from cxdb.storage.postgres import PostgresBackend


def payload(n: int) -> bytes:
    text = f"turn {n}: the assistant explains how the store frames its blobs, " * 3
    return msgpack.packb({"role": "assistant", "n": n, "text": text})  # type: ignore[no-any-return]


async def test_a_dictionary_trained_by_one_gateway_is_read_by_another(postgres_url: str) -> None:
    writer = PostgresBackend(postgres_url, pool_size=4, max_batch=64, dictionary_after=60, dictionary_size=4096)
    reader = PostgresBackend(postgres_url, pool_size=4, max_batch=64)
    await writer.start()
    await reader.start()  # loads the dictionaries that exist now: none
    try:
        context = await writer.create_context()
        for n in range(80):
            await writer.append(context.context_id, "t", 1, payload(n))
        for _ in range(200):  # the trainer runs on a thread; the dictionary is stored, then used
            if writer._codec.current_dictionary:
                break
            await asyncio.sleep(0.05)
        assert writer._codec.current_dictionary == 1
        later = [await writer.append(context.context_id, "t", 1, payload(n)) for n in range(1000, 1010)]
        assert all(result.turn.compression == COMPRESSION_DICT for result in later)
        wanted = [result.turn.content_hash for result in later]
        found = await reader.payloads(wanted)
        assert [found[digest] for digest in wanted] == [payload(n) for n in range(1000, 1010)]
        report = await reader.check()
        assert report["ok"], report["problems"]
        stats = await reader.stats()
        assert stats.turns == 90 and stats.blobs == 90 and stats.blob_stored_bytes < stats.blob_raw_bytes
    finally:
        await writer.close()
        await reader.close()
