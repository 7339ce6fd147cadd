"""Stored bytes per turn on a realistic corpus, against the JSON size of the same turns."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import orjson

from cxdb.config import Settings
from cxdb.service import Service

from .common import REPO
from .corpus import conversation


async def fill(service: Service, conversations: int) -> tuple[int, int, int, int, int]:
    """(turns, JSON bytes, stored bytes if nothing were shared; the same two for the turns
    appended once a compression dictionary was in use)."""
    bundle = json.loads((REPO / "registry_bundles" / "conversation-v1.json").read_text())
    await service.publish_bundle("conversation-v1", bundle)
    store = service.store.store  # type: ignore[attr-defined]  # the LMDB store: blob sizes on disk are its own
    turns = json_bytes = framed_bytes = steady_json = steady_framed = 0
    for seed in range(conversations):
        context_id = int((await service.create_context())["context_id"])
        steady = store.current_dictionary != 0
        for data in conversation(seed):
            size = len(orjson.dumps(data))
            result = await service.append(context_id, "cxdb.chat.Message", 1, data)
            # What this turn's blob takes on disk, counted for every turn as if none were shared.
            stored = store.blob_info(bytes.fromhex(result[0]["content_hash"]))[2]
            turns += 1
            json_bytes += size
            framed_bytes += stored
            if steady:
                steady_json += size
                steady_framed += stored
    return turns, json_bytes, framed_bytes, steady_json, steady_framed


async def _measure(data_dir: Path, conversations: int) -> tuple[tuple[int, int, int, int, int], dict[str, Any]]:
    async with Service(Settings(store=str(data_dir))) as service:
        return await fill(service, conversations), await service.stats()


def run(conversations: int = 800) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        (turns, json_bytes, framed, steady_json, steady_framed), stats = asyncio.run(
            _measure(Path(tmp) / "data", conversations))
    return {
        "turns": float(turns),
        "json_bytes_per_turn": json_bytes / turns,
        "stored_bytes_per_turn_before_dedup": framed / turns,
        "ratio_before_dedup": framed / json_bytes,
        "ratio_before_dedup_with_dictionary": steady_framed / steady_json if steady_json else float("nan"),
        "ratio_after_dedup": stats["blob_stored_bytes"] / json_bytes,
        "ratio_whole_store": stats["storage_bytes"] / json_bytes,
        "dedup_hit_rate": stats["dedup_hit_rate"],
    }


if __name__ == "__main__":
    print(run(200))
