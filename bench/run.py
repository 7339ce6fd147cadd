"""Run every benchmark and print one table: absolute figures, ratios against the bare aiohttp
baseline measured in the same run, and the DESIGN targets.

    python -m bench            # the full run (5 to 8 minutes on 2 cores)
    python -m bench --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from typing import Any

from . import (
    access,
    batch,
    depth,
    events,
    http_load,
    latency,
    memory,
    observability,
    postgres,
    projection,
    registry,
    storage_ratio,
    store_appends,
)
from .common import HERE, have_wrk, table
from .pgcluster import NoPostgres


def _fmt(value: float, unit: str = "") -> str:
    return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:,.2f}{unit}"


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("takes comma-separated positive integers, e.g. 1,2")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs")
    parser.add_argument("--workers", type=_worker_counts, default=[1, 2],
                        help="comma-separated cxdb serve --workers counts for the HTTP scenarios (default 1,2)")
    args = parser.parse_args(argv)
    worker_counts: list[int] = args.workers
    quick = args.quick
    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                          f"{platform.python_version()}", "quick": quick}
    rows: list[list[str]] = []

    print("in-process appends ...", file=sys.stderr)
    appends = results["store_appends"] = store_appends.run(quick)
    rows.append(["durable appends in process, 32 producers", _fmt(appends["group_commit_per_s"], "/s"),
                 f"{appends['group_commit_per_s'] / appends['one_txn_per_s']:.1f}x one txn per append",
                 ">= 20,000/s"])

    if have_wrk():
        for workers in worker_counts:
            print(f"HTTP load (wrk), cxdb serve --workers {workers} ...", file=sys.stderr)
            http = results[f"http_workers_{workers}"] = http_load.run(
                seconds=3 if quick else 5, rounds=2 if quick else 3, workers=workers)
            served = f"--workers {workers}" if workers > 1 else "1 process"
            rows.append([f"durable appends over HTTP, 64 contexts, 32 conns ({served})", _fmt(http["cxdb_post"], "/s"),
                         f"{http['post_ratio']:.2f}x bare POST ({_fmt(http['base_post'], '/s')}), "
                         f"p99 {http['cxdb_post_p99']:.1f} ms", ">= 10,000/s and >= 0.6x"])
            rows.append([f"typed page of 64 turns over HTTP ({served})", _fmt(http["cxdb_get"], "/s"),
                         f"{http['get_ratio']:.2f}x bare GET of the same bytes ({_fmt(http['base_get'], '/s')})",
                         ">= 0.5x"])
        print("PostgreSQL against LMDB ...", file=sys.stderr)
        try:
            pg = results["postgres"] = postgres.run(seconds=3 if quick else 5, rounds=2 if quick else 3)
            rows.extend(postgres.rows(pg))
        except NoPostgres as exc:
            print(f"{exc}: skipping the PostgreSQL scenarios", file=sys.stderr)
        print("live events ...", file=sys.stderr)
        live = results["events"] = events.run(seconds=3 if quick else 5, rounds=2 if quick else 3)
        rows.extend(events.rows(live))
        print("batch appends ...", file=sys.stderr)
        batched = results["batch"] = batch.run(seconds=3 if quick else 5, rounds=2 if quick else 3)
        rows.extend(batch.rows(batched))
        print("access control A/B ...", file=sys.stderr)
        guarded = results["access"] = access.run(seconds=3, rounds=3 if quick else 7)
        rows.extend([[*row, ""] for row in access.rows(guarded)])
        print("metrics and access log A/B ...", file=sys.stderr)
        obs = results["observability"] = observability.run(rounds=3 if quick else 5, seconds=3)
        rows.extend(observability.rows(obs))
    else:
        print("wrk is not installed: skipping the HTTP scenarios (apt-get install -y wrk)", file=sys.stderr)

    print("latency at a fixed rate ...", file=sys.stderr)
    lat = results["latency"] = latency.run(rate=1000, seconds=5 if quick else 10)
    rows.append(["append latency at 1,000/s (open loop)", f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
                 f"p99.9 {lat['p999_ms']:.1f} ms, {lat['errors']:.0f} errors", "p99 <= 10 ms"])

    print("paging depth and memory ...", file=sys.stderr)
    deep = results["depth"] = depth.run(depth=100_000 if quick else 1_000_000, small=10_000)
    rows.append([f"paging at depth {deep['depth']:,.0f} vs depth 10",
                 f"{deep['cursor_page_deep_us']:.0f} us vs {deep['cursor_page_depth_10_us']:.0f} us",
                 f"{deep['cursor_deep_vs_10']:.2f}x (cursor pages); head pages {deep['head_deep_vs_10']:.2f}x",
                 "<= 2x"])
    rows.append([f"server RssAnon, {deep['depth']:,.0f} vs 10,000 turns",
                 f"{deep['rss_anon_kib_big'] / 1024:.1f} vs {deep['rss_anon_kib_small'] / 1024:.1f} MiB",
                 f"{deep['rss_anon_ratio']:.2f}x (file-backed: {deep['rss_file_kib_big'] / 1024:.0f} vs "
                 f"{deep['rss_file_kib_small'] / 1024:.0f} MiB)", "flat"])

    print("storage ...", file=sys.stderr)
    size = results["storage"] = storage_ratio.run(200 if quick else 800)
    rows.append(["stored bytes / JSON bytes, realistic turns",
                 f"{size['ratio_before_dedup_with_dictionary']:.2f} with dictionary",
                 f"{size['ratio_before_dedup']:.2f} overall before dedup, {size['ratio_after_dedup']:.2f} after; "
                 f"dedup hit rate {size['dedup_hit_rate']:.1%}", "<= 0.35x"])
    rows.append(["whole store on disk / JSON bytes, the same turns", f"{size['ratio_whole_store']:.2f}",
                 "blobs, turn records, indexes and B-tree pages", "-"])

    print("projection ...", file=sys.stderr)
    proj = results["projection"] = projection.run(5_000 if quick else 20_000)
    rows.append(["typed projections in process", f"{_fmt(proj['cold_turns_per_s'], '/s')} cold",
                 f"{_fmt(proj['cached_turns_per_s'], '/s')} cached", "-"])

    print("registry at scale ...", file=sys.stderr)
    reg = results["registry"] = registry.run()
    rows.extend(registry.rows(reg))

    print("memory with big turns ...", file=sys.stderr)
    mem = results["memory"] = memory.run(quick)
    rows.extend(memory.rows(mem))

    print(f"\n{results['machine']}, {results['date']}\n")
    print(table(rows, ["scenario", "measured", "relative", "target"]))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
