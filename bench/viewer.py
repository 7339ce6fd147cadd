"""The viewer in a real browser (Debian's chromium, driven by Playwright): time from opening a
conversation of 100,000 turns to its newest page on screen, against a conversation of 10 turns opened
the same way in the same rounds; and time from an append's acknowledgement to the turn on screen
without a reload, against the same append's event reaching a ``/follow`` stream of the Python client.

Run: ``python -m bench.viewer`` (needs the test extra's playwright and /usr/bin/chromium).
"""

from __future__ import annotations

import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cxdb import Client

from .common import REPO, cxdb_server, table

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
BIG = 100_000
LIVE_APPENDS = 20


def fill(client: Client, turns: int) -> str:
    """A context of ``turns`` chat messages, appended 1,000 at a time."""
    context_id = str(client.create_context(client_tag="bench/viewer").context_id)
    for start in range(0, turns, 1000):
        client.append_batch(context_id, [
            {"type_id": "cxdb.chat.Message", "type_version": 1,
             "data": {"role": "user" if i % 2 else "assistant", "timestamp": 1706615000000 + i,
                      "text": f"message {i}: " + "The quick brown fox jumps over the lazy dog. " * 6}}
            for i in range(start, min(turns, start + 1000))])
    return context_id


def _open(browser: Any, url: str) -> tuple[float, int]:
    """Milliseconds from navigation to the newest page on screen, and the turns shown."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    page.locator("article.turn").last.wait_for(timeout=30_000)
    elapsed = (time.perf_counter() - started) * 1000
    shown = page.locator("article.turn").count()
    context.close()
    return elapsed, shown


def _live(browser: Any, url: str, client: Client, context_id: str) -> dict[str, float]:
    """Median milliseconds from acknowledgement to the turn on screen, and to the follow stream's event."""
    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    page.goto(f"{url}/ui/#/c/{context_id}")
    page.locator(".status.live").wait_for(timeout=30_000)
    arrived: queue.Queue[float] = queue.Queue()

    def follow() -> None:
        with Client(url) as own:
            for _ in own.follow(context_id):
                arrived.put(time.perf_counter())

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.5)
    screen, stream = [], []
    for i in range(LIVE_APPENDS):
        turn = client.append_turn(context_id, type_id="cxdb.chat.Message", type_version=1,
                                  data={"role": "user", "text": f"live {i}"})
        acknowledged = time.perf_counter()
        page.locator(f"#turn-{turn.turn_id}").wait_for(timeout=30_000)
        screen.append((time.perf_counter() - acknowledged) * 1000)
        stream.append((arrived.get(timeout=30) - acknowledged) * 1000)
        time.sleep(0.05)
    page.context.close()
    return {"screen": statistics.median(screen), "stream": statistics.median(stream)}


def run(rounds: int = 7) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        with Client(url, timeout=120) as client:
            client.publish_bundle(REPO / "registry_bundles" / "conversation-v1.json")
            small = fill(client, 10)
            big = fill(client, BIG)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            _open(browser, f"{url}/ui/#/c/{small}")  # the browser's first start is not the viewer's
            times: dict[str, list[float]] = {"small": [], "big": []}
            for _ in range(rounds):
                for name, context_id in (("small", small), ("big", big)):
                    elapsed, _shown = _open(browser, f"{url}/ui/#/c/{context_id}")
                    times[name].append(elapsed)
            with Client(url) as client:
                live = _live(browser, url, client, small)
            browser.close()
    return {**{name: statistics.median(values) for name, values in times.items()}, "live": live}


def rows(out: dict[str, Any]) -> list[list[str]]:
    return [[f"viewer: open a conversation of {BIG:,} turns to its newest page on screen",
             f"{out['big']:.0f} ms", f"{out['big'] / out['small']:.2f}x one of 10 turns ({out['small']:.0f} ms)",
             "< 1 s"],
            [f"viewer: append acknowledged -> the turn on screen, no reload ({LIVE_APPENDS} appends)",
             f"{out['live']['screen']:.0f} ms",
             f"{out['live']['screen'] / out['live']['stream']:.2f}x the /follow event at the Python client "
             f"({out['live']['stream']:.0f} ms)", "< 2 s"]]


if __name__ == "__main__":
    print(table(rows(run()), ["scenario", "measured", "relative", "target"]))
