"""Settings and the cxdb command: serve, check, backup."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from cxdb import Client
from cxdb.config import SETTINGS, Settings, add_arguments, settings_from
from cxdb.storage import Store
from tests.conftest import LiveServer


def parse(argv: list[str], env: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args(argv), env)


def test_defaults_match_the_table() -> None:
    defaults = Settings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.name) == setting.default, setting.name
        assert setting.help
    assert (defaults.host, defaults.port, defaults.store) == ("127.0.0.1", 9010, "cxdb-data")


def test_flag_beats_environment_beats_default() -> None:
    env = {"CXDB_PORT": "7000", "CXDB_HOST": "0.0.0.0", "CXDB_REQUIRE_REGISTRY": "yes",
           "CXDB_CORS_ORIGINS": "https://a.example, https://b.example"}
    settings = parse(["--port", "8000"], env)
    assert settings.port == 8000 and settings.host == "0.0.0.0" and settings.require_registry
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert parse(["--require-registry"], {}).require_registry
    assert parse([], {}).port == 9010


@pytest.mark.parametrize("argv, env, name", [
    (["--port", "70000"], {}, "--port"),
    ([], {"CXDB_PORT": "abc"}, "CXDB_PORT"),
    ([], {"CXDB_REQUIRE_REGISTRY": "perhaps"}, "CXDB_REQUIRE_REGISTRY"),
    (["--max-body-bytes", "0"], {}, "--max-body-bytes"),
])
def test_bad_settings_name_themselves(argv: list[str], env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        parse(argv, env)


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cxdb", "serve", "--port", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "--port" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_shuts_down_gracefully(tmp_path: Path, signum: int) -> None:
    server = LiveServer(tmp_path / "data", env={"CXDB_MAX_BATCH": "8"})
    with Client(server.url) as client:
        ctx = client.create_context()
        for i in range(20):
            client.append_turn(ctx.context_id, {"type_id": "t", "type_version": 1, "data": {"i": i}})
    server.proc.send_signal(signum)
    assert server.proc.wait(timeout=20) == 0
    server.stop()
    with Store(tmp_path / "data") as store:
        assert store.stats().turns == 20 and store.check()["ok"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", *args], capture_output=True, text=True, timeout=60)


def test_check_and_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def fill() -> bytes:
        with Store(data) as store:
            ctx = await store.create_context()
            turn = (await store.append(ctx.context_id, "t", 1, b"\x81\xa1a\x01")).turn
            return turn.content_hash

    digest = asyncio.run(fill())
    result = run_cli("check", "--data-dir", str(data))
    assert result.returncode == 0 and json.loads(result.stdout)["ok"]
    result = run_cli("backup", "--data-dir", str(data), str(tmp_path / "copy"))
    assert result.returncode == 0
    assert run_cli("check", "--data-dir", str(tmp_path / "copy")).returncode == 0
    again = run_cli("backup", "--data-dir", str(data), str(tmp_path / "copy"))
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    env = lmdb.open(str(data), max_dbs=16)
    blobs = env.open_db(b"blobs")
    with env.begin(write=True) as txn:
        txn.delete(digest, db=blobs)
    env.close()
    result = run_cli("check", "--data-dir", str(data))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert {p["kind"] for p in report["problems"]} == {"turn_blob_missing", "counter_wrong"}


def test_workers_share_one_store(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--workers", "2")
    try:
        clients = [Client(server.url) for _ in range(4)]
        ctx = clients[0].create_context()
        for i in range(40):
            clients[i % 4].append_turn(ctx.context_id, {"type_id": "t", "type_version": 1, "data": {"i": i}})
        turns = clients[1].get_turns(ctx.context_id, limit=100).turns
        assert [t.data.i for t in turns] == list(range(40))
        assert [t.depth for t in turns] == list(range(1, 41))
        for client in clients:
            client.close()
    finally:
        assert server.stop() == 0
    with Store(tmp_path / "data") as store:
        assert store.stats().turns == 40 and store.check()["ok"]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _accepted(pid: int, port: int) -> int:
    """How many established connections to ``port`` process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_workers_share_connections_evenly(tmp_path: Path) -> None:
    """Each worker listens with SO_REUSEPORT, so the kernel spreads a burst of connections
    over all of them (32 connections leave a worker fewer than 4 with odds of about 1e-6)."""
    server = LiveServer(tmp_path / "data", "--workers", "2")
    port = int(server.url.rpartition(":")[2])
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(32)]
    try:
        for connection in connections:  # all connected before any is served: a burst
            connection.connect()
        time.sleep(0.2)
        for connection in connections:
            connection.request("GET", "/health")
            assert connection.getresponse().read()
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        counts = [_accepted(pid, port) for pid in workers]
        assert sum(counts) == 32 and min(counts) >= 4, counts
    finally:
        for connection in connections:
            connection.close()
        assert server.stop() == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_refused_cleanly(tmp_path: Path, workers: int) -> None:
    """A second server on a taken port exits 1 with one line, whether or not either uses workers:
    workers must not join another server's SO_REUSEPORT group and split its traffic."""
    extra = ("--workers", str(workers)) if workers > 1 else ()
    first = LiveServer(tmp_path / "first", *extra)
    port = first.url.rpartition(":")[2]
    try:
        result = subprocess.run([sys.executable, "-m", "cxdb", "serve", "--data-dir", str(tmp_path / "second"),
                                 "--port", port, *extra], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert "cannot listen on" in result.stderr and "in use" in result.stderr
        assert "Traceback" not in result.stderr
        with Client(first.url) as client:  # the first server still answers every request
            assert all(client.health()["status"] == "ok" for _ in range(8))
    finally:
        assert first.stop() == 0


def test_the_command_line_imports_no_metrics_library_before_serve_sets_it_up() -> None:
    # prometheus_client reads its multiprocess directory when first imported; `cxdb serve` sets it
    # after parsing the command line, so nothing the parser imports may bring the library in.
    import subprocess
    import sys

    code = "import sys, cxdb.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
