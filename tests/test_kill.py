"""kill -9 of a server under load, on each backend: every acknowledged turn is there afterwards, and
the store checks clean."""

from __future__ import annotations

import threading

from cxdb import Client
from cxdb.config import Settings
from cxdb.storage import check
from tests.conftest import LiveServer, wait_until


def test_every_acknowledged_append_survives_kill_9_under_load(store_url: str) -> None:
    server = LiveServer(store_url)
    with Client(server.url) as client:
        contexts = [client.create_context().context_id for _ in range(4)]
    acknowledged: list[tuple[str, str, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with Client(server.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                context_id = contexts[(worker + n) % len(contexts)]
                try:
                    turn = client.append_turn(context_id, type_id="t", type_version=1, data={"w": worker, "n": n})
                except Exception:  # the server is gone: what it did not answer was never acknowledged
                    return
                acknowledged.append((context_id, turn.turn_id, turn.content_hash))

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 300, timeout=60)
        server.kill()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    again = LiveServer(store_url)
    try:
        with Client(again.url) as client:
            stored = {context_id: {turn["turn_id"]: turn["content_hash_b3"]
                                   for turn in client.iter_turns(context_id, view="raw", page_size=256)}
                      for context_id in contexts}
    finally:
        assert again.stop() == 0
    for context_id, turn_id, digest in acknowledged:
        assert stored[context_id].get(turn_id) == digest, (context_id, turn_id)


async def test_the_store_checks_clean_after_kill_9(store_url: str) -> None:
    server = LiveServer(store_url)
    with Client(server.url) as client:
        context_id = client.create_context().context_id
        for n in range(50):
            client.append_turn(context_id, type_id="t", type_version=1, data={"n": n})
    server.kill()
    report = await check(Settings(store=store_url))
    assert report["ok"], report["problems"]
    assert report["counts"]["turns"] == 50
