"""Server memory with big turns: RSS after writing and reading turns of 1 KiB, 1 MiB and 8 MiB, and the
peak while hostile bodies arrive, each against the same server's RSS when idle.

For each size a fresh ``cxdb serve`` gets the turns, then every page of them is read with six render
option sets and with ``view=both``. RSS is read from /proc after writing and after reading (VmRSS, what
the process holds) together with VmHWM (the peak). Memory is bounded in bytes by the caches (64 MiB of
pages, 64 MiB of projections, none of a payload over 1 MiB), the page budget (``--max-page-bytes``,
16 MiB) and the dictionary trainer (4 KiB a sample), so RSS must stay flat however big the turns: the
bound documented in docs/performance.md is 400 MiB.

The hostile scenario sends four 16 MiB bodies of ``[[],[],...]`` at once while another process
probes ``/health`` every 10 ms, and reports the peak RSS and the probe's slowest answer.

    python -m bench.memory [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .common import cxdb_server, table

SIZES = {"1 KiB": (1024, 2000), "1 MiB": (1024 * 1024, 60), "8 MiB": (8 * 1024 * 1024, 12)}
OPTIONS = ("", "&bytes_render=hex", "&u64_format=number", "&enum_render=both", "&time_render=unix_ms",
           "&include_unknown=true", "&view=both")
PROBE = """
import http.client, sys, time
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2])); seen = []
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    start = time.perf_counter(); conn.request("GET", "/health"); conn.getresponse().read()
    seen.append(time.perf_counter() - start); time.sleep(0.01)
seen.sort()
print(seen[int(len(seen) * 0.99)], seen[-1])
"""


def _status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
            name, amount = line.split(":")
            values[name] = int(amount.split()[0]) // 1024
    return values


def _server_pid(port: int) -> int:
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    return int(out.split("pid=")[1].split(",")[0])


class _Http:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body)
        reply = self.conn.getresponse()
        return reply.status, reply.read()


def _sized(size: int, count: int, quick: bool) -> dict[str, Any]:
    count = max(4, count // 4) if quick else count
    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        client = _Http(url)
        pid = _server_pid(client.port)
        idle = _status(pid)
        client.call("POST", "/v1/contexts/create", b"{}")
        for n in range(count):
            text = (f"{n} " * (size // 2))[:size - 60]
            status, _ = client.call("POST", "/v1/contexts/1/append", orjson.dumps(
                {"type_id": "t", "type_version": 1, "data": {"n": n, "text": text}}))
            assert status == 201, status
        written = _status(pid)
        pages = 0
        for options in OPTIONS:
            before = ""
            while True:
                status, raw = client.call("GET", f"/v1/contexts/1/turns?limit=100{options}{before}")
                assert status == 200, status
                pages += 1
                cursor = orjson.loads(raw)["next_before_turn_id"]
                if cursor is None:
                    break
                before = f"&before_turn_id={cursor}"
        read = _status(pid)
    return {"turns": count, "pages": pages, "idle_mib": idle["VmRSS"], "written_mib": written["VmRSS"],
            "read_mib": read["VmRSS"], "peak_mib": read["VmHWM"]}


def _hostile() -> dict[str, Any]:
    body = b'{"type_id":"a","type_version":1,"data":{"a":[' + b"[]," * 5_500_000 + b"[]]}}"
    with tempfile.TemporaryDirectory() as tmp, cxdb_server(Path(tmp) / "data") as url:
        client = _Http(url)
        pid = _server_pid(client.port)
        idle = _status(pid)
        client.call("POST", "/v1/contexts/create", b"{}")
        probe = subprocess.Popen([sys.executable, "-c", PROBE, client.host, str(client.port), "4"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: _Http(url).call("POST", "/v1/contexts/1/append", body)[0], range(4)))
        p99, worst = (float(part) for part in probe.communicate()[0].split())
        after = _status(pid)
    return {"statuses": statuses, "body_mib": len(body) / 2**20, "idle_mib": idle["VmRSS"],
            "peak_mib": after["VmHWM"], "health_p99_ms": p99 * 1000, "health_worst_ms": worst * 1000}


def run(quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {label: _sized(size, count, quick) for label, (size, count) in SIZES.items()}
    results["hostile"] = _hostile()
    return results


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for label in SIZES:
        item = results[label]
        out.append([f"server RSS, {item['turns']} turns of {label} written, then read ({item['pages']} pages)",
                    f"{item['written_mib']} / {item['read_mib']} MiB (peak {item['peak_mib']})",
                    f"{item['read_mib'] / item['idle_mib']:.1f}x idle ({item['idle_mib']} MiB)", "<= 400 MiB"])
    hostile = results["hostile"]
    out.append([f"4 x {hostile['body_mib']:.0f} MiB of [[],[],...] at once",
                f"peak {hostile['peak_mib']} MiB, /health p99 {hostile['health_p99_ms']:.0f} ms, "
                f"worst {hostile['health_worst_ms']:.0f} ms",
                f"{hostile['peak_mib'] / hostile['idle_mib']:.1f}x idle; answers {sorted(set(hostile['statuses']))}",
                "/health < 100 ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    results = run(parser.parse_args().quick)
    print(table(rows(results), ["scenario", "measured", "relative", "bound"]))


if __name__ == "__main__":
    main()
