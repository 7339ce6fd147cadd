"""``cxdb gc`` and ``cxdb compact`` as a user runs them, and the lifecycle settings: gc with a server
running, on each backend; compact refused while a server has the store open, and giving pages back
once it is stopped; an LMDB store of format 4 gains its reference counts when opened."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import lmdb
import msgpack
import pytest

from cxdb import Client
from cxdb.storage import Store
from cxdb.storage.lmdb.env import FORMAT
from tests.conftest import LiveServer
from tests.test_cli import parse


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", *args], capture_output=True, text=True, timeout=120)


def test_gc_reclaims_with_the_server_running(store_url: str) -> None:
    server = LiveServer(store_url, "--gc", "off")
    try:
        with Client(server.url) as client:
            keep = client.create_context()
            client.append_turn(keep.context_id, type_id="t", type_version=1, data={"shared": True})
            doomed = [client.create_context().context_id for _ in range(3)]
            for context_id in doomed:
                for n in range(4):
                    client.append_turn(context_id, type_id="t", type_version=1, data={"c": context_id, "n": n})
                client.append_turn(context_id, type_id="t", type_version=1, data={"shared": True})
            for context_id in doomed:
                client.delete_context(context_id)
            waiting = client.stats()["reclaiming"]
            assert waiting["contexts"] == 3 and waiting["turns"] == 3
            result = run_cli("gc", "--store", store_url)
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            assert report["freed"]["contexts"] == 3 and report["freed"]["turns"] == 15
            assert report["freed"]["blobs"] == 12 and report["freed"]["bytes"] > 0  # not the shared payload
            assert report["reclaiming"] == {"contexts": 0, "turns": 0, "blobs": 0, "bytes": 0}
            stats = client.stats()
            assert (stats["contexts"], stats["turns"], stats["blobs"]) == (1, 1, 1)
            assert [t["data"] for t in client.get_turns(keep.context_id)["turns"]] == [{"shared": True}]
    finally:
        assert server.stop() == 0
    checked = run_cli("check", "--store", store_url)
    assert checked.returncode == 0, checked.stdout


def test_gc_refuses_a_missing_store(tmp_path: Path) -> None:
    result = run_cli("gc", "--store", str(tmp_path / "none"))
    assert result.returncode == 1 and "no cxdb store" in result.stderr
    assert not (tmp_path / "none" / "data.mdb").exists()


def test_gc_creates_no_schema(postgres_url: str) -> None:
    result = run_cli("gc", "--store", postgres_url)
    assert result.returncode == 1 and "cxdb migrate" in result.stderr
    assert run_cli("check", "--store", postgres_url).returncode == 1  # still no schema


def test_compact_waits_for_the_server_to_stop_and_then_gives_pages_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = LiveServer(data)
    try:
        with Client(server.url) as client:
            keep = client.create_context()
            for n in range(5):
                client.append_turn(keep.context_id, type_id="t", type_version=1, data={"n": n})
            for _ in range(2):
                doomed = client.create_context().context_id
                client.append_batch(doomed, [{"type_id": "t", "type_version": 1,
                                              "data": {"blob": os.urandom(10_000).hex()}} for _ in range(100)])
                client.delete_context(doomed)
            pages = client.get_turns(keep.context_id)
        refused = run_cli("compact", "--store", str(data))
        assert refused.returncode == 1 and "open in another process" in refused.stderr
    finally:
        assert server.stop() == 0
    assert run_cli("gc", "--store", str(data)).returncode == 0
    before = (data / "data.mdb").stat().st_size
    result = run_cli("compact", "--store", str(data))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["before_bytes"] == before and report["after_bytes"] < before / 4
    assert (data / "data.mdb").stat().st_size == report["after_bytes"]
    assert sorted(p.name for p in data.iterdir()) == ["cxdb.lock", "data.mdb", "lock.mdb"]
    again = LiveServer(data)
    try:
        with Client(again.url) as client:
            assert client.get_turns(keep.context_id) == pages
    finally:
        assert again.stop() == 0
    assert run_cli("check", "--store", str(data)).returncode == 0


def test_compact_is_for_lmdb(postgres_url: str) -> None:
    result = run_cli("compact", "--store", postgres_url)
    assert result.returncode == 1 and "VACUUM" in result.stderr


@pytest.mark.parametrize("argv, name", [
    (["--retain", "runs/"], "--retain"),
    (["--retain", "=7d"], "--retain"),
    (["--retain", "a/=7d,a/=8d"], "--retain"),
    (["--retain-days", "soon"], "--retain-days"),
    (["--retain-days", "0"], "--retain-days"),
    (["--idempotency-ttl", "1h"], "--idempotency-ttl"),
    (["--head-history-days", "-1"], "--head-history-days"),
])
def test_bad_lifecycle_settings_name_themselves(argv: list[str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        parse(argv, {})


def test_lifecycle_settings_parse() -> None:
    settings = parse(["--retain", "runs/=7d, eval/=12h", "--retain-days", "90", "--idempotency-ttl", "48h",
                      "--head-history-days", "off"], {})
    assert settings.retain == (("runs/", 7 * 86_400.0), ("eval/", 12 * 3600.0))
    assert settings.retain_days == 90 * 86_400.0 and settings.idempotency_ttl == 48 * 3600.0
    assert settings.head_history_days is None
    assert parse([], {}).head_history_days == 30 * 86_400.0 and parse([], {"CXDB_GC": "off"}).gc is False


def test_a_format_4_store_gains_its_reference_counts_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "data"

    async def fill() -> tuple[int, int]:
        with Store(path) as store:
            context = await store.create_context()
            first = await store.append(context.context_id, "t", 1, msgpack.packb({"n": 1}), idempotency_key="k")
            await store.append(context.context_id, "t", 1, msgpack.packb({"n": 2}))
            await store.append(context.context_id, "t", 1, msgpack.packb({"n": 1}), parent_turn_id=0)
            await store.create_context(first.turn.turn_id)
            return context.context_id, first.turn.turn_id

    context_id, first = asyncio.run(fill())
    env = lmdb.open(str(path), max_dbs=32)  # as format 4 left it: no counts, queue or age index
    with env.begin(write=True) as txn:
        for name in (b"refs", b"blobrefs", b"garbage", b"expiry"):
            txn.drop(env.open_db(name, txn=txn), delete=True)
        txn.put(b"format", json.dumps({**FORMAT, "format_version": 4}).encode(), db=env.open_db(b"meta", txn=txn))
    env.close()

    async def upgraded() -> None:
        with Store(path) as store:
            assert store.check()["ok"], store.check()
            assert await store.expire(2**62, 2**62, 10) == (1, 1)  # the age index was built
            await store.delete_context(context_id)
            while (await store.reclaim(100)).more:
                pass
            assert store.stats().turns == 1 and store.get_turn(first).turn_id == first  # the fork holds it
            assert store.check()["ok"]

    asyncio.run(upgraded())
