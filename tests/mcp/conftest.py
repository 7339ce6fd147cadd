"""The live server the MCP tests of a module share, on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def server(module_store_url: str) -> Iterator[LiveServer]:
    live = LiveServer(module_store_url, "--event-heartbeat", "1")
    try:
        yield live
    finally:
        live.stop()
