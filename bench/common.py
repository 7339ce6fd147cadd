"""Helpers shared by the benchmarks: payloads, servers in subprocesses, wrk, tables."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def message(i: int, size: int = 300) -> dict[str, Any]:
    """A ~``size``-byte JSON conversation message, different for each ``i``."""
    text = f"turn {i}: " + ("The quick brown fox jumps over the lazy dog. " * 20)
    body = {"role": "user" if i % 2 else "assistant", "text": text[: max(0, size - 60)], "timestamp": 1706615000000 + i}
    return body


def append_body(i: int, size: int = 300) -> bytes:
    return orjson.dumps({"type_id": "bench.Message", "type_version": 1, "data": message(i, size)})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def serving(args: Sequence[str], port: int) -> Iterator[str]:
    """Run a server process that listens on ``port``; yields its base URL, stops it afterwards."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def cxdb_server(store: Path | str, *extra: str) -> contextlib.AbstractContextManager[str]:
    """``cxdb serve`` on a free port, on ``store`` (an LMDB directory or a postgresql:// URL)."""
    port = free_port()
    return serving(["-m", "cxdb", "serve", "--store", str(store), "--port", str(port),
                    "--log-level", "warning", *extra], port)


def baseline_server(page_file: Path) -> contextlib.AbstractContextManager[str]:
    """The bare aiohttp baseline (bench/baseline.py) on a free port."""
    port = free_port()
    return serving([str(HERE / "baseline.py"), str(port), str(page_file)], port)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, script: Path | None = None, connections: int = 32, threads: int = 2, seconds: int = 5,
        env: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> dict[str, float]:
    """Run wrk; returns requests/s, latency p50/p99 in ms, and non-2xx responses."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%"),
            "non2xx": float(errors.group(1)) if errors else 0.0}


def _latency(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join([line, rule, *body])


def rss_kib(pid: int) -> dict[str, int]:
    """RssAnon and RssFile of a process, in KiB (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:", "VmRSS:")):
            name, amount = line.split(":")
            values[name] = int(amount.split()[0])
    return values
