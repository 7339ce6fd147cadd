"""Shared fixtures: a real store (LMDB in tmp_path, or a fresh schema of a real PostgreSQL), an
in-process app, and a live server.

Every test that takes ``store_url`` (through ``settings``, ``client``, ``make_client``, ``service`` or
``live_server``) runs once per backend. The PostgreSQL runs need ``CXDB_TEST_POSTGRES``, a URL of a
database the tests may create schemas in (``.ci/run`` starts one); without it they are skipped, with
that reason. A test that is about LMDB itself carries ``@pytest.mark.lmdb_only``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient

from cxdb import Client
from cxdb.config import Settings
from cxdb.errors import CxdbError
from cxdb.http import create_app
from cxdb.service import Service
from cxdb.storage import Backend, Store, open_backend
from tests.conformance import FAILURES, watch

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
BUNDLES = REPO / "registry_bundles"


POSTGRES = os.environ.get("CXDB_TEST_POSTGRES")
BACKENDS = ("lmdb", "postgres")
NO_POSTGRES = "CXDB_TEST_POSTGRES is not set (a postgresql:// URL the tests may create schemas in; .ci/run sets it)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lmdb_only: a test about the LMDB backend itself; not run on PostgreSQL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``lmdb_only`` keeps only its LMDB run."""
    items[:] = [item for item in items if not (
        item.get_closest_marker("lmdb_only") is not None
        and getattr(getattr(item, "callspec", None), "params", {}).get("backend") == "postgres")]


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES)
    try:
        await conn.execute("SET lock_timeout = '30s'")  # a test that left a transaction open fails, not hangs
        await conn.execute(statement)
    finally:
        await conn.close()


def _in_a_thread(coroutine: Any) -> Any:
    """``asyncio.run`` on a thread of its own: callers may have a loop running (Playwright's sync API keeps one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class PostgresSchema:
    """A schema of its own in the test database: a store as empty as a new LMDB directory."""

    def __init__(self) -> None:
        if POSTGRES is None:
            pytest.skip(NO_POSTGRES)
        self.name = "t_" + uuid.uuid4().hex[:16]
        _in_a_thread(_admin(f"CREATE SCHEMA {self.name}"))
        self.url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}search_path={self.name}"

    def drop(self) -> None:
        _in_a_thread(_admin(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL store (skipped when no PostgreSQL is configured)."""
    schema = PostgresSchema()
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def fresh_store(backend: str, directory: Path) -> Iterator[str]:
    """A fresh store of ``backend``: an LMDB directory under ``directory``, or a PostgreSQL schema."""
    if backend == "lmdb":
        yield str(directory / "data")
        return
    schema = PostgresSchema()
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh store of the backend under test."""
    with fresh_store(backend, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh store of each backend, shared by the tests of one module (a fuzzed server's)."""
    with fresh_store(str(request.param), tmp_path_factory.mktemp("store")) as url:
        yield url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def settings(store_url: str) -> Settings:
    return Settings(store=store_url, port=0)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = watch(create_app(settings))
    opened = await aiohttp_client(app)
    yield opened
    await opened.close()  # before the store's fixture drops it: the server's background work stops first
    assert app[FAILURES] == [], "responses that do not conform to /openapi.json"


@pytest.fixture
async def make_client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[Any]:
    """Build a client for an app with changed settings."""
    apps = []

    async def make(**changes: Any) -> TestClient[Any, Any]:
        app = watch(create_app(settings.replace(**changes)))
        opened = await aiohttp_client(app)
        apps.append((app, opened))
        return opened

    yield make
    for app, opened in apps:
        await opened.close()  # before the store's fixture drops it: the server's background work stops first
        assert app[FAILURES] == [], "responses that do not conform to /openapi.json"


class LiveServer:
    """``cxdb serve --port 0`` in a subprocess."""

    def __init__(self, store: Path | str, *extra: str, env: dict[str, str] | None = None,
                 preexec_fn: Any = None) -> None:
        self.store = str(store)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxdb", "serve", "--store", self.store, "--port", "0", *extra],
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
def live_server(store_url: str) -> Iterator[LiveServer]:
    server = LiveServer(store_url)
    try:
        yield server
    finally:
        server.stop()


def at_once(url: str, count: int, call: Callable[[Client, int], T]) -> list[T | CxdbError]:
    """``call(client, n)`` for n in range(count), each in a thread of its own with a connection of its
    own (under --workers the kernel spreads them over the workers), all released together; what each
    returned or the error it raised, in order of n."""
    outcomes: list[T | CxdbError | None] = [None] * count
    start = threading.Barrier(count)

    def run(n: int) -> None:
        with Client(url) as own:
            start.wait()
            try:
                outcomes[n] = call(own, n)
            except CxdbError as exc:
                outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(outcome is not None for outcome in outcomes), "a thread failed outside the API"
    return outcomes  # type: ignore[return-value]


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
async def opened(store_url: str) -> AsyncIterator[Backend]:
    """A started backend on a fresh store of the backend under test, for storage-level tests."""
    found = open_backend(Settings(store=store_url))
    await found.start()
    try:
        yield found
    finally:
        await found.close()


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    async with Service(settings) as opened:
        yield opened
