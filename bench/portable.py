"""Export and import of a large store, in turns/s and peak RSS: ``cxdb export`` of an LMDB store of N
turns (contexts of 100 turns of about 300 bytes each), ``cxdb import`` of that file into a fresh LMDB
store and into a fresh PostgreSQL database (a private cluster), each command in a process of its own.

Ratios: each rate against the store's own batch appends of the same turns, measured in the same run
(the build); each peak RSS against the same command on a store a tenth the size, which shows whether
memory grows with the store.

Run: ``python -m bench.portable [--turns 1000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from cxdb.storage import NewTurn
from cxdb.storage.lmdb.backend import LmdbBackend

from .common import message, table
from .pgcluster import Cluster, NoPostgres

PER_CONTEXT = 100


async def _build(path: Path, turns: int) -> float:
    """A store of ``turns`` turns in contexts of 100, by batch appends; its turns/s."""
    backend = LmdbBackend(path, map_size=1 << 34, max_batch=512)
    started = time.perf_counter()
    try:
        for first in range(0, turns, PER_CONTEXT):
            context = await backend.create_context(0, f"bench/{first // PER_CONTEXT % 97}")
            batch = [NewTurn("bench.Message", 1, msgpack.packb(message(first + i)))
                     for i in range(min(PER_CONTEXT, turns - first))]
            await backend.append_batch(context.context_id, batch)
    finally:
        await backend.close()
    return turns / (time.perf_counter() - started)


def _timed(args: list[str]) -> tuple[float, int, int]:
    """Run ``cxdb ...`` in a child: its wall seconds, and its peak RSS and peak anonymous RSS in MiB
    (polled from /proc: a child's ``ru_maxrss`` starts from the parent's size at fork). Mapped pages of
    an LMDB file count in the RSS; the anonymous figure is the process's own memory."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "cxdb", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    peak = anon = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
            elif line.startswith("RssAnon:"):
                anon = max(anon, int(line.split()[1]))
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if process.wait() != 0:
        raise RuntimeError(f"cxdb {' '.join(args)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return elapsed, peak // 1024, anon // 1024


def _round(root: Path, turns: int, postgres: str | None) -> dict[str, Any]:
    source = root / f"src-{turns}"
    builder = [sys.executable, "-m", "bench.portable", "--build", str(source), "--turns", str(turns)]
    built = float(subprocess.run(builder, capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parent.parent).stdout)  # apart: this process stays small
    out = root / f"export-{turns}.jsonl.zst"
    figures: dict[str, Any] = {"build_turns_per_s": built, "file_bytes": 0}
    seconds, rss, anon = _timed(["export", "--store", str(source), "--output", str(out)])
    figures["export"] = (turns / seconds, rss, anon)
    figures["file_bytes"] = out.stat().st_size
    seconds, rss, anon = _timed(["import", "--store", str(root / f"dst-{turns}"), str(out)])
    figures["import_lmdb"] = (turns / seconds, rss, anon)
    if postgres is not None:
        seconds, rss, anon = _timed(["import", "--store", postgres, str(out)])
        figures["import_postgres"] = (turns / seconds, rss, anon)
    return figures


def run(turns: int = 1_000_000) -> dict[str, Any]:
    cluster = None
    with tempfile.TemporaryDirectory(prefix="cxdb-bench-portable-") as tmp:
        root = Path(tmp)
        try:
            cluster = Cluster()
        except NoPostgres:
            cluster = None
        try:
            small_url = large_url = None
            if cluster is not None:
                for name in ("small", "large"):
                    subprocess.run([*cluster._as, str(cluster.bindir / "createdb"), "-h", str(cluster.dir), name],
                                   check=True)
                small_url = cluster.url.replace("/postgres?", "/small?")
                large_url = cluster.url.replace("/postgres?", "/large?")
            small = _round(root, turns // 10, small_url)
            large = _round(root, turns, large_url)
        finally:
            if cluster is not None:
                cluster.remove()
    return {"turns": turns, "small": small, "large": large}


def report(result: dict[str, Any]) -> str:
    large, small = result["large"], result["small"]
    build = large["build_turns_per_s"]
    rows = []
    for key, label in (("export", "export (LMDB → .jsonl.zst)"), ("import_lmdb", "import into LMDB"),
                       ("import_postgres", "import into PostgreSQL")):
        if key not in large:
            continue
        rate, rss, anon = large[key]
        rows.append([label, f"{rate:,.0f} turns/s", f"{rate / build:.2f}× batch appends ({build:,.0f}/s)",
                     f"{rss} MiB ({anon} MiB anonymous)",
                     f"{anon / small[key][2]:.2f}× anonymous at {result['turns'] // 10:,} turns ({small[key][2]} MiB)"])
    return (f"{result['turns']:,} turns, file {large['file_bytes'] / 1e6:,.0f} MB\n\n"
            + table(rows, ["step", "rate", "relative", "peak RSS", "memory relative"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--build", type=Path, default=None, help=argparse.SUPPRESS)  # the child that builds
    args = parser.parse_args()
    if args.build is not None:
        print(asyncio.run(_build(args.build, args.turns)))
        return
    print(report(run(args.turns)))


if __name__ == "__main__":
    main()
