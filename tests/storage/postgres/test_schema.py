"""The PostgreSQL schema: created by ``cxdb migrate`` or at ``serve``, its version checked at every start,
and ``cxdb check`` finding damage in it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from cxdb.config import Settings
from cxdb.storage import check, open_backend
from cxdb.storage.postgres.schema import SCHEMA_VERSION, TABLES
from tests.conftest import LiveServer


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", *args], capture_output=True, text=True, timeout=120)


async def sql(url: str, statement: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(statement, *args)
    finally:
        await conn.close()


def test_migrate_creates_the_schema_once_and_then_finds_it_current(postgres_url: str) -> None:
    first = cli("migrate", "--store", postgres_url)
    assert first.returncode == 0 and "created a new store" in first.stdout, first.stderr
    second = cli("migrate", "--store", postgres_url)
    assert second.returncode == 0 and "current" in second.stdout, second.stderr
    rows = asyncio.run(sql(postgres_url, "SELECT version FROM cxdb_schema"))
    assert [row[0] for row in rows] == [SCHEMA_VERSION]
    present = asyncio.run(sql(postgres_url, "SELECT to_regclass(name) IS NOT NULL FROM unnest($1::text[]) name",
                              list(TABLES)))
    assert all(row[0] for row in present)



def test_a_schema_of_another_version_is_refused_with_one_line(postgres_url: str) -> None:
    assert cli("migrate", "--store", postgres_url).returncode == 0
    asyncio.run(sql(postgres_url, "UPDATE cxdb_schema SET version = 99"))
    for command in (["serve", "--port", "0"], ["check"], ["migrate"]):
        result = cli(*command, "--store", postgres_url)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "schema version 99" in lines[0] and "Traceback" not in result.stderr, lines


def test_check_asks_for_migrate_on_a_database_without_cxdb(postgres_url: str) -> None:
    result = cli("check", "--store", postgres_url)
    assert result.returncode == 1 and "cxdb migrate" in result.stderr, result.stderr


def test_serve_creates_the_schema_when_absent_and_never_logs_the_password(postgres_url: str) -> None:
    # The test cluster trusts local connections, so the password is accepted and ignored.
    with_password = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    assert with_password != postgres_url
    server = LiveServer(with_password)
    assert server.stop() == 0
    assert "a new one was created" in server.stderr_text and "s3cret-pw" not in server.stderr_text
    assert "postgres:***@" in server.stderr_text
    assert [row[0] for row in asyncio.run(sql(postgres_url, "SELECT version FROM cxdb_schema"))] == [SCHEMA_VERSION]
    again = LiveServer(with_password)
    assert again.stop() == 0
    assert "a new one was created" not in again.stderr_text


async def test_check_finds_damage(postgres_url: str) -> None:
    backend = open_backend(Settings(store=postgres_url))
    await backend.start()
    try:
        context = await backend.create_context(client_tag="x")
        for n in range(3):
            await backend.append(context.context_id, "t", 1, bytes([0x81, 0xA1, 0x6E, n]))
        assert (await backend.check())["ok"]
    finally:
        await backend.close()
    await sql(postgres_url, "UPDATE blobs SET stored = overlay(stored placing '\\x00'::bytea from length(stored))")
    await sql(postgres_url, "DELETE FROM turns WHERE depth = 2")
    await sql(postgres_url, "UPDATE tag_counts SET contexts = 5")
    await sql(postgres_url, "UPDATE counters SET contexts = 7")
    report = await check(Settings(store=postgres_url))
    kinds = {problem["kind"] for problem in report["problems"]}
    assert not report["ok"]
    assert {"turn_parent_missing", "index_count_wrong", "counter_wrong"} <= kinds, report
    assert kinds & {"blob_hash_mismatch", "blob_undecodable"}, report
    assert report["problem_count"] == len(report["problems"])


def test_backup_is_for_lmdb_and_says_what_to_use_instead(postgres_url: str, tmp_path: Any) -> None:
    result = cli("backup", str(tmp_path / "copy"), "--store", postgres_url)
    assert result.returncode == 2 and "pg_dump" in result.stderr


@pytest.mark.parametrize("url", ["postgresql://", "postgres://nobody@/nowhere?host=/nonexistent-dir"])
def test_a_url_that_leads_nowhere_is_one_line(url: str) -> None:
    result = cli("check", "--store", url)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr


async def _some_turns(url: str) -> None:
    backend = open_backend(Settings(store=url))
    await backend.start()
    try:
        context = await backend.create_context()
        for n in range(3):
            await backend.append(context.context_id, "t", 1, bytes([0x81, 0xA1, 0x6E, n % 2]))
        await backend.create_context(context.head_turn_id + 1)
    finally:
        await backend.close()


@pytest.mark.parametrize("old", [1, 2, 3, 4])
def test_an_older_schema_is_upgraded_by_migrate_and_by_serve(postgres_url: str, old: int) -> None:
    for upgrade in (["migrate"], ["serve", "--port", "0"]):
        assert cli("migrate", "--store", postgres_url).returncode == 0
        asyncio.run(_some_turns(postgres_url))
        # as version 4 left it: no reference counts, reclamation queue or age indexes
        asyncio.run(sql(postgres_url, "ALTER TABLE turns DROP COLUMN refs"))
        asyncio.run(sql(postgres_url, "ALTER TABLE blobs DROP COLUMN refs"))
        asyncio.run(sql(postgres_url, "DROP TABLE gc_contexts, gc_turns"))
        asyncio.run(sql(postgres_url, "DROP INDEX head_history_by_age, idempotency_by_age"))
        if old < 4:
            asyncio.run(sql(postgres_url, "DROP TABLE auth_entries"))  # as versions 1 to 3 left it
        if old < 3:
            asyncio.run(sql(postgres_url, "DROP TABLE head_history"))
        if old == 1:
            asyncio.run(sql(postgres_url, "DROP TABLE events"))
            asyncio.run(sql(postgres_url, "ALTER TABLE counters DROP COLUMN next_event"))
        asyncio.run(sql(postgres_url, f"UPDATE cxdb_schema SET version = {old}"))
        refused = cli("check", "--store", postgres_url)
        assert refused.returncode == 1 and "cxdb migrate" in refused.stderr and f"version {old}" in refused.stderr
        if upgrade[0] == "migrate":
            result = cli(*upgrade, "--store", postgres_url)
            assert result.returncode == 0 and "upgraded the store" in result.stdout, result.stderr
        else:
            server = LiveServer(postgres_url)
            assert server.stop() == 0
        assert [row[0] for row in asyncio.run(sql(postgres_url, "SELECT version FROM cxdb_schema"))] == [5]
        checked = cli("check", "--store", postgres_url)
        assert checked.returncode == 0, checked.stdout  # the reference counts included
        refs = asyncio.run(sql(postgres_url, "SELECT refs FROM turns ORDER BY turn_id"))
        assert [row[0] for row in refs] == [2, 1, 1]  # a child and a fork's head; a child; a head
        if old == 1:
            assert asyncio.run(sql(postgres_url, "SELECT next_event FROM counters"))[0][0] == 0
        if old < 3:
            assert asyncio.run(sql(postgres_url, "SELECT count(*) FROM head_history"))[0][0] == 0
        assert asyncio.run(sql(postgres_url, "SELECT count(*) FROM auth_entries"))[0][0] == 0
        asyncio.run(sql(postgres_url, "DROP TABLE " + ", ".join(TABLES)))
