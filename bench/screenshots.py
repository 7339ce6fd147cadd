"""The README's screenshots of the viewer, light and dark, from a fresh store with a small conversation:
``python -m bench.screenshots`` rewrites docs/img/viewer-light.png and docs/img/viewer-dark.png."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cxdb import Client

from .common import REPO, cxdb_server
from .viewer import ARGS, CHROMIUM

OUT = REPO / "docs" / "img"


def _conversation(client: Client) -> str:
    client.publish_bundle(REPO / "registry_bundles" / "conversation-v1.json")
    context_id = str(client.create_context(client_tag="support/ticket-4711",
                                           provenance={"agent": "helpdesk", "model": "example-1"}).context_id)
    turns = [
        {"role": "system", "text": "You are a helpful support agent. Be brief."},
        {"role": "user", "text": "My nightly export stopped on Tuesday. Can you check what happened?"},
        {"role": "assistant", "text": "Let me look at the job history.",
         "tool_calls": [{"id": "call-1", "name": "job_history", "arguments": {"job": "nightly-export", "days": 7},
                         "duration": 84}]},
        {"role": "tool", "text": "2 runs failed: disk quota exceeded on /exports (Tue, Wed)."},
        {"role": "assistant", "text": "The export has failed since Tuesday because /exports is full. Clearing "
                                      "files older than 30 days frees 41 GB; shall I do it?"},
    ]
    for i, data in enumerate(turns):
        client.append_turn(context_id, type_id="cxdb.chat.Message", type_version=1,
                           data={**data, "timestamp": 1764590400000 + i * 61_000})
    client.append_turn(context_id, type_id="ops.Decision", type_version=1,
                       data={"action": "cleanup", "approved_by": "dana", "paths": ["/exports/2026-10"]})
    client.fork_context(client.get_turns(context_id).turns[3].turn_id, client_tag="support/ticket-4711")
    return context_id


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        with Client(url) as client:
            context_id = _conversation(client)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for scheme in ("light", "dark"):
                page = browser.new_context(color_scheme=scheme, viewport={"width": 1100, "height": 760},
                                           timezone_id="UTC", locale="en-GB").new_page()
                page.goto(f"{url}/ui/#/c/{context_id}")
                page.locator(".status.live").wait_for()
                page.evaluate("() => window.scrollTo(0, 0)")
                page.screenshot(path=str(OUT / f"viewer-{scheme}.png"))
                print(OUT / f"viewer-{scheme}.png")
            browser.close()


if __name__ == "__main__":
    main()
