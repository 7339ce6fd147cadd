"""Projected turns per second in process: cold (decode and render every payload) and cached."""

from __future__ import annotations

import json
import time

import msgpack

from cxdb.cache import LruCache
from cxdb.projection import RenderOptions, encode_typed, project
from cxdb.registry import Catalog, parse_bundle

from .common import REPO
from .corpus import conversation


def run(turns: int = 20_000) -> dict[str, float]:
    catalog = Catalog().with_bundle(parse_bundle(json.loads(
        (REPO / "registry_bundles" / "conversation-v1.json").read_text())))
    descriptor = catalog.descriptor("cxdb.chat.Message", 1)
    assert descriptor is not None

    def lookup(ref: object) -> object:
        return catalog.descriptor(ref.type_id, ref.version)  # type: ignore[attr-defined]

    payloads = []
    seed = 0
    while len(payloads) < turns:
        payloads.extend(msgpack.packb(encode_typed(d, descriptor, lookup)) for d in conversation(seed))  # type: ignore[arg-type]
        seed += 1
    payloads = payloads[:turns]
    options = RenderOptions()
    start = time.perf_counter()
    rendered = [project(raw, descriptor, lookup, options) for raw in payloads]  # type: ignore[arg-type]
    cold = turns / (time.perf_counter() - start)
    cache: LruCache[tuple[int, RenderOptions], object] = LruCache(turns)
    for i, projection in enumerate(rendered):
        cache.put((i, options), projection)
    start = time.perf_counter()
    for i in range(turns):
        cache.get((i, options))
    cached = turns / (time.perf_counter() - start)
    return {"cold_turns_per_s": cold, "cached_turns_per_s": cached, "cached_vs_cold": cached / cold}


if __name__ == "__main__":
    print(run())
