"""Shared fixtures: a real store in tmp_path, an in-process app, and a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cxdb.config import Settings
from cxdb.http import create_app
from cxdb.service import Service
from cxdb.storage import Store
from tests.conformance import FAILURES, watch

REPO = Path(__file__).resolve().parent.parent
BUNDLES = REPO / "registry_bundles"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", port=0)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = watch(create_app(settings))
    yield await aiohttp_client(app)
    assert app[FAILURES] == [], "responses that do not conform to /openapi.json"


@pytest.fixture
async def make_client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """Build a client for an app with changed settings."""
    apps = []

    async def make(**changes: Any) -> TestClient[Any, Any]:
        app = watch(create_app(Settings(data_dir=tmp_path / "data", port=0).replace(**changes)))
        apps.append(app)
        return await aiohttp_client(app)

    yield make
    for app in apps:
        assert app[FAILURES] == [], "responses that do not conform to /openapi.json"


class LiveServer:
    """``cxdb serve --port 0`` in a subprocess."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None,
                 preexec_fn: Any = None) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxdb", "serve", "--data-dir", str(data_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
            preexec_fn=preexec_fn)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = match.group(1)
        self._stderr: list[str] = []
        # Drained all along, so a server that logs a lot never blocks on a full pipe.
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout=timeout)
        self.close_streams()
        return code

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr_text(self) -> str:
        """What the server has written to stderr so far."""
        return "".join(self._stderr)

    def close_streams(self) -> str:
        """Close the pipes (the server has exited); everything it wrote to stderr."""
        self._drain.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.stderr_text

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=20)
        self.close_streams()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "live")
    try:
        yield server
    finally:
        server.stop()


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with Service(settings) as opened:
        yield opened
