"""``cxdb export``, ``import`` and ``copy`` as a user runs them, on both backends: files plain and
zstd, stdin, the id map, copy's verification, and the progress bar, shown on a terminal only."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import msgpack
import orjson

from cxdb.config import Settings
from cxdb.storage import NewTurn, open_backend
from tests.conftest import fresh_store

CXDB = [sys.executable, "-m", "cxdb"]


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CXDB, *args], cwd=cwd, input=stdin, capture_output=True, timeout=120)


def fill(store: str, contexts: int = 3, turns: int = 4) -> None:
    """``contexts`` contexts tagged runs/<n> of ``turns`` turns each, appended in batches."""

    async def go() -> None:
        backend = open_backend(Settings(store=store))
        await backend.start()
        try:
            for n in range(contexts):
                context = await backend.create_context(0, f"runs/{n}")
                await backend.append_batch(context.context_id, [
                    NewTurn("demo.Note", 1, msgpack.packb({"n": n, "m": m})) for m in range(turns)])
        finally:
            await backend.close()

    asyncio.run(go())


def test_export_import_copy(backend: str, tmp_path: Path) -> None:
    with fresh_store(backend, tmp_path / "src") as source:
        fill(source)
        done = run("export", "--store", source, "--output", "all.jsonl.zst", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "all.jsonl.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
        assert b"exported 3 contexts and 12 turns" in done.stderr
        assert done.stderr.count(b"\n") == 1  # no progress bar: stderr is not a terminal
        done = run("import", "--store", "copy-a", "all.jsonl.zst", cwd=tmp_path)
        assert done.returncode == 0 and b"imported 3 contexts, 12 turns" in done.stderr, done.stderr
        done = run("import", "--store", "copy-a", "all.jsonl.zst", cwd=tmp_path)
        assert b"nothing new" in done.stderr
        plain = run("export", "--store", source, "--tag-prefix", "runs/1", cwd=tmp_path).stdout
        assert [orjson.loads(line).get("kind") for line in plain.splitlines()].count("context") == 1
        fill(str(tmp_path / "copy-b"), contexts=1)
        done = run("import", "--store", "copy-b", "--id-map", "map.json", "-", cwd=tmp_path, stdin=plain)
        assert done.returncode == 0, done.stderr
        assert orjson.loads((tmp_path / "map.json").read_bytes())["same"] is False
        done = run("copy", "--from", source, "--to", "copy-c", "--verify", "full", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        report = orjson.loads(done.stdout)
        assert report["ok"] and report["contexts_checked"] == 3 and report["turns_checked"] == 12
        done = run("export", "--store", source, "--context", "999", "--output", "none.jsonl", cwd=tmp_path)
        assert done.returncode == 1 and b"999" in done.stderr and not (tmp_path / "none.jsonl").exists()
        spoiled = tmp_path / "bad.jsonl"
        spoiled.write_bytes(b'{"format": "cxdb-export", "version": 7}\n')
        done = run("import", "--store", "copy-a", "bad.jsonl", cwd=tmp_path)
        assert done.returncode == 1 and b"line 1: unknown format version 7" in done.stderr


def on_a_terminal(args: list[str], cwd: Path) -> bytes:
    """What ``args`` writes to stderr when stderr is a terminal (a pseudo-terminal 100 columns wide)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        process = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=follower)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=60) == 0, seen
    finally:
        os.close(leader)
    return seen


def test_the_progress_bar_shows_on_a_terminal(tmp_path: Path) -> None:
    fill(str(tmp_path / "src"), contexts=2, turns=3)
    seen = on_a_terminal([*CXDB, "export", "--store", "src", "--output", "out.jsonl.zst"], tmp_path)
    assert b"export: 100%" in seen and b"6.00/6.00" in seen and b"turns/s" in seen, seen
    seen = on_a_terminal([*CXDB, "import", "--store", "dst", "out.jsonl.zst"], tmp_path)
    assert b"import: 100%" in seen and b"6.00/6.00" in seen, seen  # the total, from the zstd file's header


def test_an_import_killed_midway_leaves_complete_contexts_and_finishes_when_run_again(backend: str,
                                                                                     tmp_path: Path) -> None:
    with fresh_store(backend, tmp_path / "src") as source, fresh_store(backend, tmp_path / "dst") as target:
        fill(source, contexts=100, turns=100)  # an import of a second or two: the kill lands inside it
        assert run("export", "--store", source, "--output", "all.jsonl", cwd=tmp_path).returncode == 0
        process = subprocess.Popen([*CXDB, "import", "--store", target, "all.jsonl"], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            checked = run("check", "--store", target, cwd=tmp_path)
            if checked.returncode == 0 and orjson.loads(checked.stdout)["counts"]["contexts"] > 0:
                break
            time.sleep(0.02)
        process.kill()
        process.wait()
        checked = run("check", "--store", target, cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout
        done = run("import", "--store", target, "all.jsonl", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        mine = run("export", "--store", source, cwd=tmp_path).stdout
        theirs = run("export", "--store", target, cwd=tmp_path).stdout
        assert theirs.split(b"\n", 1)[1] == mine.split(b"\n", 1)[1]
