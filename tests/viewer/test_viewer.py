"""The viewer at /ui/ in a real browser: Playwright driving Debian's chromium, against a live server on
each backend, with real data.

Every page the tests open fails its test if it asks any host but cxdb for anything, or logs a console
error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from cxdb import Client
from tests.conftest import BUNDLES, LiveServer

playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAYLOAD_SCRIPT = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    import os

    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CXDB_REQUIRE_BROWSER"):  # .ci/run: the browser tests must run
            pytest.fail(reason)
        pytest.skip(reason)
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(module_store_url: str) -> Iterator[LiveServer]:
    live = LiveServer(module_store_url, "--event-heartbeat", "1")
    try:
        with Client(live.url) as client:
            client.publish_bundle(BUNDLES / "conversation-v1.json")
        yield live
    finally:
        live.stop()


class Watched:
    """A page whose requests and console errors are recorded."""

    def __init__(self, browser: Any, origin: str, color_scheme: str = "light") -> None:
        self.context = browser.new_context(color_scheme=color_scheme, viewport={"width": 1200, "height": 800})
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def check(self, allowed_errors: tuple[str, ...] = ()) -> None:
        foreign = [url for url in self.requests if not url.startswith((self.origin, "data:", "blob:"))]
        assert foreign == [], foreign
        errors = [e for e in self.errors if not any(allowed in e for allowed in allowed_errors)]
        assert errors == [], errors
        self.context.close()


@pytest.fixture
def watched(browser: Any, server: LiveServer) -> Iterator[Watched]:
    page = Watched(browser, server.url)
    yield page
    page.check()


def _message(i: int, role: str = "user", text: str | None = None) -> dict[str, Any]:
    return {"type_id": "cxdb.chat.Message", "type_version": 1,
            "data": {"role": role, "text": text if text is not None else f"message number {i}",
                     "timestamp": 1706615000000 + i}}


def _conversation(client: Client, turns: int, tag: str) -> str:
    context_id = str(client.create_context(client_tag=tag).context_id)
    for start in range(0, turns, 500):
        client.append_batch(context_id, [_message(i, "user" if i % 2 else "assistant")
                                         for i in range(start, min(turns, start + 500))])
    return context_id


def test_the_contexts_page_lists_filters_and_updates_live(server: LiveServer, watched: Watched) -> None:
    tag = f"list-{time.monotonic_ns()}/"
    with Client(server.url) as client:
        first = _conversation(client, 3, tag + "a")
        _conversation(client, 1, "elsewhere")
        page = watched.page
        page.goto(server.url + "/")  # a browser at the root goes to the viewer
        assert urlsplit(page.url).path == "/ui/"
        page.goto(f"{server.url}/ui/#/?tag={tag}")
        rows = page.locator("table.contexts tbody tr")
        rows.first.wait_for()
        assert rows.count() == 1 and first in rows.first.inner_text() and "3" in rows.first.inner_text()
        page.locator(".status.live").wait_for()
        later = str(client.create_context(client_tag=tag + "b").context_id)
        page.locator(f"tr[data-context-id='{later}']").wait_for()  # live: no reload (bench/viewer.py times it)
        client.append_turn(first, **_message(99))
        page.wait_for_function(
            "id => document.querySelector(`tr[data-context-id='${id}'] td.num`).textContent === '4'", arg=first)
        assert page.locator("table.contexts tbody tr").first.get_attribute("data-context-id") == first
    with Client(server.url) as client:
        many = f"many-{time.monotonic_ns()}/"
        for _ in range(53):
            client.create_context(client_tag=many)
    page.goto(f"{server.url}/ui/#/?tag={many}")
    page.wait_for_function("() => document.querySelectorAll('table.contexts tbody tr').length === 50")
    page.get_by_role("button", name="more").click()  # the next page, by next_before
    page.wait_for_function("() => document.querySelectorAll('table.contexts tbody tr').length === 53")
    assert not page.get_by_role("button", name="more").is_visible()
    page.goto(f"{server.url}/ui/#/?tag={tag}")
    page.locator(f"a[href='#/c/{first}']").click()
    page.locator("article.turn").first.wait_for()
    assert page.locator("article.turn").count() == 4
    assert not page.locator("#banner").is_visible()  # no error, no banner


def test_a_long_conversation_opens_at_its_newest_page_and_pages_back(server: LiveServer, watched: Watched) -> None:
    with Client(server.url) as client:
        context_id = _conversation(client, 130, "long")
    page = watched.page
    pages: list[str] = []
    page.on("request", lambda request: pages.append(request.url) if "/turns" in request.url else None)
    page.goto(f"{server.url}/ui/#/c/{context_id}")
    turns = page.locator("article.turn")
    turns.first.wait_for()
    assert turns.count() == 40
    assert "message number 129" in turns.last.inner_text()
    for expected in (80, 120, 130):
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_function("n => document.querySelectorAll('article.turn').length === n", arg=expected)
    assert "message number 0" in turns.first.inner_text()
    page.get_by_text("the first turn").wait_for()
    assert len(pages) == 4, pages  # one request a page, never the whole history


def test_chat_and_json_rendering_from_the_typed_view(server: LiveServer, watched: Watched) -> None:
    with Client(server.url) as client:
        context_id = str(client.create_context(client_tag="render").context_id)
        client.append_turn(context_id, type_id="cxdb.chat.Message", type_version=1, data={
            "role": "assistant", "text": "Let me look that up.", "timestamp": 1706615000000,
            "tool_calls": [{"id": "c1", "name": "search", "arguments": {"q": "weather"}, "duration": 12}]})
        client.append_turn(context_id, type_id="custom.Event", type_version=1,
                           data={"kind": "deploy", "nested": {"ok": True, "count": 3}})
        client.append_turn(context_id, type_id="cxdb.chat.Message", type_version=1,
                           data={"role": "user", "text": "x" * 5000})
    page = watched.page
    page.goto(f"{server.url}/ui/#/c/{context_id}")
    chat = page.locator("article.turn").nth(0)
    chat.wait_for()
    assert chat.locator(".role").inner_text().lower() == "assistant"  # the enum's label, from the typed view
    assert chat.locator("time").get_attribute("datetime") == "2024-01-30T11:43:20.000Z"  # unix_ms as ISO
    tool = chat.locator("details.tool-call")
    assert tool.get_attribute("open") is None and "search" in tool.inner_text()  # folded
    assert "12 ms" in tool.locator("summary").first.inner_text()
    event = page.locator("article.turn").nth(1)
    assert event.locator(".type").inner_text() == "custom.Event"
    assert "deploy" in event.locator(".tree").inner_text() and "count" in event.locator(".tree").inner_text()
    long = page.locator("article.turn").nth(2)
    assert len(long.locator(".text").inner_text()) < 2100 and long.locator(".cut").is_visible()
    long.locator("button.expand").click()
    page.wait_for_function("() => document.querySelectorAll('article.turn')[2].querySelector('.text')"
                           ".textContent.length === 5000")
    page.get_by_label("raw view").check()
    raw = page.locator("article.turn .raw").first
    raw.wait_for()
    assert "msgpack" in raw.inner_text() and "bytes" in raw.inner_text()


def test_new_turns_appear_live_and_a_rebase_is_shown(server: LiveServer, watched: Watched) -> None:
    with Client(server.url) as client:
        context_id = _conversation(client, 3, "live")
        page = watched.page
        page.goto(f"{server.url}/ui/#/c/{context_id}")
        page.locator(".status.live").wait_for()
        second = client.get_turns(context_id).turns[1].turn_id
        added = client.append_turn(context_id, **_message(50, text="arrived live"))
        page.locator(f"#turn-{added.turn_id}").wait_for()  # live, without a reload: bench/viewer.py times it
        assert page.locator("article.turn").count() == 4
        regenerated = client.append_turn(context_id, **_message(51, text="another answer"), parent_turn_id=second)
        page.locator(f"#turn-{regenerated.turn_id}").wait_for()
        assert "head moved" in page.locator(".marker.rebase").inner_text()
        texts = page.locator("article.turn .text").all_inner_texts()
        assert texts == ["message number 0", "message number 1", "another answer"]
        page.locator(".heads a").first.click()  # the replaced head, from the head history
        page.get_by_text("arrived live").wait_for()


def test_fork_navigation_and_fork_from_a_turn(server: LiveServer, watched: Watched) -> None:
    with Client(server.url) as client:
        context_id = _conversation(client, 4, "fork-me")
    page = watched.page
    page.goto(f"{server.url}/ui/#/c/{context_id}")
    page.locator("article.turn").nth(1).locator("button.write-action").click()
    page.wait_for_url(lambda url: re.search(r"#/c/\d+$", url) is not None and not url.endswith(f"/c/{context_id}"))
    fork_id = page.url.rsplit("/", 1)[1]
    assert fork_id != context_id
    page.locator("article.turn").first.wait_for()
    assert page.locator("article.turn").count() == 2
    assert f"context {context_id}" in page.locator(".lineage").inner_text()
    page.locator(".lineage a").first.click()
    page.locator(".lineage .child").first.wait_for()
    assert fork_id in page.locator(".lineage").inner_text()
    page.locator(f".lineage .child a[href='#/c/{fork_id}']").click()
    page.wait_for_url(re.compile(rf"#/c/{fork_id}$"))


def test_keyboard_and_phone_width(browser: Any, server: LiveServer) -> None:
    with Client(server.url) as client:
        context_id = _conversation(client, 3, "a-rather-long-tag/for-a-narrow-screen/" + "x" * 30)
        client.append_turn(context_id, type_id="cxdb.chat.Message", type_version=1,
                           data={"role": "tool", "text": "result " * 200})
    watched = Watched(browser, server.url)
    phone = watched.context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    for path in ("#/", f"#/c/{context_id}", "#/registry"):
        phone.goto(f"{server.url}/ui/{path}")
        phone.locator("main h1").wait_for()
        assert phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    phone.goto(f"{server.url}/ui/#/c/{context_id}")
    tool = phone.locator("details.tool-result")
    assert tool.get_attribute("open") is None and "tool result" in tool.inner_text()  # folded
    page = watched.page
    page.goto(f"{server.url}/ui/#/c/{context_id}")
    page.locator("article.turn").first.wait_for()
    for _ in range(40):  # Tab to the first "fork here", then Enter forks
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "fork here":
            break
    else:
        raise AssertionError("no fork button reached by Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: not url.endswith(f"/c/{context_id}"))
    watched.check()


def test_payloads_are_text_never_markup(server: LiveServer, watched: Watched) -> None:
    with Client(server.url) as client:
        context_id = str(client.create_context(client_tag=PAYLOAD_SCRIPT).context_id)
        client.append_turn(context_id, **_message(1, text=PAYLOAD_SCRIPT))
        client.append_turn(context_id, type_id="x", type_version=1, data={PAYLOAD_SCRIPT: PAYLOAD_SCRIPT})
    page = watched.page
    page.goto(f"{server.url}/ui/#/c/{context_id}")
    page.locator("article.turn .text").first.wait_for()
    assert page.locator("article.turn .text").first.inner_text() == PAYLOAD_SCRIPT
    assert PAYLOAD_SCRIPT in page.locator("h1").inner_text()
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("main script, main img").count() == 0


def test_the_registry_and_errors_are_readable(server: LiveServer, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{server.url}/ui/#/registry")
    page.get_by_text("cxdb.chat.Message").wait_for()
    assert "conversation-v1" in page.locator("main ol").inner_text()
    page.locator("a[href='#/registry/cxdb.chat.Message/1']").click()
    page.locator("table.fields").wait_for()
    assert "role" in page.locator("table.fields").inner_text() and "cxdb.chat.Role" in page.locator(
        "table.fields").inner_text()
    page.goto(f"{server.url}/ui/#/c/987654321")
    banner = page.locator("#banner")
    banner.wait_for()
    assert "Context 987654321 not found" in banner.inner_text() and "404" in banner.inner_text()
    watched.errors = [e for e in watched.errors if "404" not in e]  # the browser logs the failed fetch itself


def test_the_token_prompt_and_a_read_only_token(browser: Any, module_store_url: str, tmp_path: Any) -> None:
    boot = "viewer-bootstrap-token-" + "q" * 30
    live = LiveServer(module_store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": boot})
    try:
        with Client(live.url, token=boot) as admin:
            context_id = _conversation(admin, 2, "guarded")
            reader = admin.create_token("cxdb:read").token
        watched = Watched(browser, live.url)
        page = watched.page
        page.goto(f"{live.url}/ui/#/c/{context_id}")
        dialog = page.locator("#token-dialog")
        dialog.wait_for()
        page.locator("#token-input").fill("cxdb_0000000000000000_" + "x" * 43)
        page.locator("#token-submit").click()
        page.locator("#token-error").wait_for()
        assert "refused" in page.locator("#token-error").inner_text()
        page.locator("#token-input").fill(reader)
        page.locator("#token-submit").click()
        page.locator("article.turn").first.wait_for()
        assert page.locator("article.turn").count() == 2
        assert not page.locator("button.write-action").first.is_visible()  # read-only: no fork
        assert "cxdb:read" in page.locator("#who").inner_text()
        assert page.evaluate("() => sessionStorage.getItem('cxdb.token')") == reader
        assert page.evaluate("() => localStorage.length") == 0
        watched.check(allowed_errors=("401",))
    finally:
        live.stop()


def test_a_dropped_stream_reconnects_and_resumes(browser: Any, store_url: str) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    live = LiveServer(store_url, "--port", port)
    watched = Watched(browser, live.url)
    try:
        with Client(live.url) as client:
            context_id = _conversation(client, 2, "restart")
        page = watched.page
        page.goto(f"{live.url}/ui/#/c/{context_id}")
        page.locator(".status.live").wait_for()
        live.stop()
        page.locator(".status.reconnecting").wait_for()
        live = LiveServer(store_url, "--port", port)
        with Client(live.url) as client:
            added = client.append_turn(context_id, **_message(7, text="after the restart"))
        page.locator(f"#turn-{added.turn_id}").wait_for(timeout=15_000)
        page.locator(".status.live").wait_for()
        assert page.locator("article.turn").count() == 3
        watched.check(allowed_errors=("ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE", "network"))
    finally:
        live.stop()
