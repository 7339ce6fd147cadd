"""Full disks, bad locations and CLI mistakes: one clear line, the right exit status, nothing created
or lost (issue 11). The disk tests mount a small tmpfs, which needs root (as CI has)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxdb import Client, __version__
from cxdb.errors import CxdbError
from tests.conftest import LiveServer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", *argv], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def one_line(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@contextlib.contextmanager
def mounted(path: Path, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *options, str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cxdb {__version__}"


@pytest.mark.parametrize("argv, status, needle", [
    (["--log-level", "bogus"], 2, "--log-level"),
    (["--map-size", "1"], 2, "--map-size"),
    (["--host", "no-such-host.invalid"], 2, "--host"),
    (["--header-timeout", "0"], 2, "--header-timeout"),
])
def test_bad_serve_settings_are_one_line(tmp_path: Path, argv: list[str], status: int, needle: str) -> None:
    one_line(run_cli("serve", "--data-dir", str(tmp_path / "d"), "--port", "0", *argv), status, needle)
    assert not (tmp_path / "d").exists()


def test_a_data_dir_that_is_a_file_or_cannot_be_made(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    one_line(run_cli("serve", "--data-dir", str(afile), "--port", "0"), 2, "--store", "not a directory")
    one_line(run_cli("serve", "--data-dir", str(afile / "sub"), "--port", "0"), 1, "cannot create")


def test_no_flag_overrides_the_environment(tmp_path: Path) -> None:
    from tests.test_cli import parse

    assert parse(["--no-require-registry"], {"CXDB_REQUIRE_REGISTRY": "1"}).require_registry is False
    assert parse(["--require-registry"], {"CXDB_REQUIRE_REGISTRY": "0"}).require_registry is True


@pytest.mark.parametrize("command", [["check"], ["backup", "OUT"]])
def test_check_and_backup_refuse_a_missing_store(tmp_path: Path, command: list[str]) -> None:
    argv = [str(tmp_path / "out") if part == "OUT" else part for part in command]
    one_line(run_cli(*argv, "--data-dir", str(tmp_path / "typo")), 1, "no cxdb store", "typo")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "out").exists()


@needs_root
def test_check_and_backup_work_on_a_read_only_copy(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data")
    with Client(server.url) as client:
        context = client.create_context(client_tag="ro")
        client.append_turn(context.context_id, {"type_id": "t", "type_version": 1, "data": {"x": 1}})
    assert server.stop() == 0
    (tmp_path / "data" / "lock.mdb").unlink()  # a copy taken without it
    with mounted(tmp_path / "ro", "--bind", str(tmp_path / "data")) as view:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        result = run_cli("check", "--data-dir", str(view))
        assert result.returncode == 0, result.stderr
        assert '"ok": true' in result.stdout
        assert run_cli("backup", str(tmp_path / "copy"), "--data-dir", str(view)).returncode == 0
    assert '"ok": true' in run_cli("check", "--data-dir", str(tmp_path / "copy")).stdout


@needs_root
def test_a_full_disk_answers_507_keeps_reads_and_recovers(tmp_path: Path) -> None:
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=8m", "tmpfs") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 3_000_000)
        server = LiveServer(disk / "data")
        try:
            with Client(server.url) as client:
                context = client.create_context()
                stored = 0
                with pytest.raises(CxdbError) as refused:
                    for n in range(40):
                        client.append_turn(context.context_id, {"type_id": "t", "type_version": 1,
                                                                "data": {"n": n, "blob": os.urandom(200_000).hex()}})
                        stored += 1
                assert refused.value.status == 507 and refused.value.code == "STORE_FULL"
                assert str(disk / "data") in refused.value.message
                assert stored > 0
                page = client.get_turns(context.context_id, limit=100)  # reads go on
                assert len(page["turns"]) == stored
                filler.unlink()  # space comes back: writes succeed again, with nothing lost
                client.append_turn(context.context_id, {"type_id": "t", "type_version": 1, "data": {"n": -1}})
                assert len(client.get_turns(context.context_id, limit=100)["turns"]) == stored + 1
                assert client.health()["status"] == "ok"
        finally:
            assert server.stop() == 0
        assert "Traceback" not in server.close_streams()
        assert '"ok": true' in run_cli("check", "--data-dir", str(disk / "data")).stdout


@needs_root
def test_starting_on_a_full_disk_is_one_line_not_a_crash(tmp_path: Path) -> None:
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as disk:
        (disk / "d").mkdir()
        with contextlib.suppress(OSError):
            with open(disk / "filler", "wb") as handle:
                while True:
                    handle.write(b"\0" * 65536)
        result = run_cli("serve", "--data-dir", str(disk / "d"), "--port", "0")
        one_line(result, 1, "no space left on device", str(disk / "d"))
        result = run_cli("check", "--data-dir", str(disk / "d"))
        one_line(result, 1, "no cxdb store")
