"""What access control costs: the same wrk load on one LMDB store served with ``--auth off`` and with
``--auth tokens``, in the same run, A/B interleaved: a typed page of 64 turns (with an admin token, and
with a token confined to the page's namespace, which reads the context's tag once more per request)
and durable appends (with a write token). Each figure is a ratio against ``--auth off``; a second
``--auth off`` server, measured in the same rounds, shows how far two identical servers differ here.

Run: ``python -m bench.access`` (wrk must be installed).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from .common import HERE, cxdb_server, have_wrk, table, wrk
from .http_load import call, prepare

BOOT = "bench-access-bootstrap-token-0123456789abcdef"
PAGE = "/v1/contexts/{}/turns?limit=64"


def _token(store: Path, scope: str, namespace: str | None = None) -> str:
    args = [sys.executable, "-m", "cxdb", "token", "create", "--store", str(store), "--scope", scope]
    if namespace is not None:
        args += ["--namespace", namespace]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def _fill(url: str) -> int:
    """A context tagged ``bench/`` with 80 turns, as the namespaced token's page; returns its id."""
    made = orjson.loads(call(f"{url}/v1/contexts/create", "POST", {"client_tag": "bench/page"}))
    context_id = int(made["context_id"])
    for i in range(80):
        call(f"{url}/v1/contexts/{context_id}/append", "POST", {
            "type_id": "bench.Message", "type_version": 1,
            "data": {"role": "user", "text": f"turn {i} " + "lorem ipsum " * 20, "timestamp": 1706615000000 + i}})
    return context_id


def run(seconds: int = 4, rounds: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "data"
        with cxdb_server(store) as url:
            prepare(url)
            tagged = _fill(url)
        tokens = {"admin": _token(store, "cxdb:admin"), "write": _token(store, "cxdb:write"),
                  "namespaced": _token(store, "cxdb:read", "bench/")}
        figures: dict[str, list[float]] = {}

        def measure(name: str, url: str, path: str, token: str | None, script: Path | None = None) -> None:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            result = wrk(url + path, script, seconds=seconds, headers=headers)
            if result["non2xx"]:
                raise RuntimeError(f"{name}: {result['non2xx']:.0f} requests failed")
            figures.setdefault(name, []).append(result["rps"])

        with cxdb_server(store, "--auth", "off") as off, cxdb_server(store, "--auth", "tokens") as on, \
                cxdb_server(store, "--auth", "off") as control:
            for _ in range(rounds):
                measure("page off", off, PAGE.format(tagged), None)
                measure("page control", control, PAGE.format(tagged), None)
                measure("page admin", on, PAGE.format(tagged), tokens["admin"])
                measure("page namespaced", on, PAGE.format(tagged), tokens["namespaced"])
                measure("append off", off, "/v1/contexts/1/append", None, HERE / "append.lua")
                measure("append write", on, "/v1/contexts/1/append", tokens["write"], HERE / "append.lua")
        return {name: statistics.median(values) for name, values in figures.items()}


def rows(out: dict[str, Any]) -> list[list[str]]:
    return [
        ["typed page of 64, a second --auth off server (the noise)", f"{out['page control']:,.0f}/s",
         f"{out['page control'] / out['page off']:.2f}x --auth off"],
        ["typed page of 64, admin token", f"{out['page admin']:,.0f}/s",
         f"{out['page admin'] / out['page off']:.2f}x --auth off ({out['page off']:,.0f}/s)"],
        ["typed page of 64, namespaced read token", f"{out['page namespaced']:,.0f}/s",
         f"{out['page namespaced'] / out['page off']:.2f}x --auth off"],
        ["durable appends, write token", f"{out['append write']:,.0f}/s",
         f"{out['append write'] / out['append off']:.2f}x --auth off ({out['append off']:,.0f}/s)"],
    ]


if __name__ == "__main__":
    if not have_wrk():
        raise SystemExit("wrk is not installed")
    print(table(rows(run()), ["scenario", "measured", "relative"]))
