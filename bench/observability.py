"""What metrics and the access log cost the append path: A/B in one run.

Four ``cxdb serve`` processes run at once, on separate stores prepared alike: metrics and access
log both on (the default), metrics off, access log off, and both off. wrk sends the append benchmark
(``append.lua``, 32 connections) to each in turn, round after round, so the machine's drift is shared.
Each server logs at ``info`` to /dev/null, so an access line is formatted and written as in production.
Two figures per variant, medians of the rounds: appends/s, and the server's own CPU time per append
(utime + stime from /proc, every thread), each as a ratio against the variant with both off. CPU per
append is the steadier of the two: it does not depend on how the two shared cores were split between
the servers and wrk in that round.

    python -m bench.observability [--rounds 4] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import HERE, free_port, have_wrk, median, table, wait_for_port, wrk
from .http_load import prepare

VARIANTS = {
    "metrics on, access log on (default)": (),
    "metrics off": ("--metrics", "off"),
    "access log off": ("--access-log", "off"),
    "both off": ("--metrics", "off", "--access-log", "off"),
}


def run(rounds: int = 4, seconds: int = 3) -> dict[str, Any]:
    procs = []
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for index, (name, extra) in enumerate(VARIANTS.items()):
                port = free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "cxdb", "serve", "--data-dir", str(Path(tmp) / f"d{index}"),
                     "--port", str(port), "--log-level", "info", *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_for_port(port)
                urls[name] = f"http://127.0.0.1:{port}"
                prepare(urls[name])
            rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
            cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
            pids = dict(zip(VARIANTS, (proc.pid for proc in procs), strict=True))
            for _ in range(rounds):
                for name, url in urls.items():
                    before = _cpu_seconds(pids[name])
                    rps = wrk(f"{url}/v1/contexts/1/append", HERE / "append.lua", seconds=seconds)["rps"]
                    rates[name].append(rps)
                    cpu[name].append((_cpu_seconds(pids[name]) - before) / (rps * seconds) * 1e6)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=60)
    base, base_cpu = median(rates["both off"]), median(cpu["both off"])
    return {name: {"rounds": values, "median": median(values), "ratio": median(values) / base,
                   "cpu_us": median(cpu[name]), "cpu_ratio": median(cpu[name]) / base_cpu}
            for name, values in rates.items()}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(results: dict[str, Any]) -> list[list[str]]:
    return [[f"durable appends over HTTP, {name}",
             f"{item['median']:,.0f}/s; {item['cpu_us']:.0f} us CPU per append",
             f"{item['ratio']:.2f}x both off; CPU {item['cpu_ratio']:.2f}x",
             "metrics within a few per cent"] for name, item in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    if not have_wrk():
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    print(table(rows(run(args.rounds, args.seconds)), ["scenario", "median", "relative", "target"]))


if __name__ == "__main__":
    main()
