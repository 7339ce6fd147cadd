"""/metrics: the Prometheus text format, exact across workers, named by convention (issue 12)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cxdb import Client
from tests.conftest import LiveServer, wait_until

APPEND = ("cxdb_http_requests_total", {"route": "/v1/contexts/{context_id}/append", "method": "POST", "status": "201"})


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(figures: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          labels: dict[str, str] | None = None) -> float:
    return figures.get((name, tuple(sorted((labels or {}).items()))), 0.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_counters_move_by_exactly_what_was_done(tmp_path: Path, workers: int, store_url: str, backend: str) -> None:
    server = LiveServer(store_url, "--workers", str(workers), "--metrics-dir", str(tmp_path / "metrics"))
    try:
        with Client(server.url) as client:
            context = client.create_context()
            before = scrape(server)
            for n in range(37):
                client.close()  # a new connection each time: with workers, the kernel spreads them
                client.append_turn(context.context_id, {"type_id": "t", "type_version": 1, "data": {"n": n}})
            for _ in range(5):  # the same payload again: dedup hits
                client.append_turn(context.context_id, {"type_id": "t", "type_version": 1, "data": {"n": 0}})
            # Each worker adds its counts to the shared figures every second (and the one answering
            # the scrape does so at once): wait for the other worker's.
            wait_until(lambda: value(scrape(server), *APPEND) - value(before, *APPEND) >= 42, timeout=5)
            after = scrape(server)
        assert value(after, "cxdb_appends_total") - value(before, "cxdb_appends_total") == 42
        assert value(after, *APPEND) - value(before, *APPEND) == 42
        assert value(after, "cxdb_dedup_hits_total") - value(before, "cxdb_dedup_hits_total") == 5
        assert value(after, "cxdb_dedup_misses_total") - value(before, "cxdb_dedup_misses_total") == 37
        batched = "cxdb_commit_batch_operations_sum"
        assert value(after, batched) - value(before, batched) >= 42
        assert value(after, "cxdb_http_request_duration_seconds_count",
                     {"route": "/v1/contexts/{context_id}/append"}) >= 42
        assert value(after, "cxdb_contexts_created_total") == 1
        assert value(after, "cxdb_store_used_bytes") > 0
        assert (value(after, "cxdb_store_map_size_bytes") > 0) == (backend == "lmdb")  # no map on PostgreSQL
        assert value(after, "cxdb_http_connections") >= 1
        # Both workers counted requests, so the exact sums above are sums over processes.
        writers = {path.stem.rsplit("_", 1)[1] for path in (tmp_path / "metrics").glob("counter_*.db")}
        assert len(writers) == workers, writers
    finally:
        assert server.stop() == 0


def test_names_follow_the_conventions(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        context = client.create_context()
        client.get_turns(context.context_id)
    with urllib.request.urlopen(live_server.url + "/metrics", timeout=10) as reply:
        families = list(text_string_to_metric_families(reply.read().decode()))
    names = {family.name for family in families}
    assert {"cxdb_http_requests", "cxdb_http_request_duration_seconds", "cxdb_appends", "cxdb_commit_duration_seconds",
            "cxdb_commit_batch_operations", "cxdb_writer_queue_depth", "cxdb_cache_lookups", "cxdb_http_connections",
            "cxdb_store_used_bytes", "cxdb_bundles_published", "cxdb_contexts_created"} <= names
    for family in families:
        assert family.name.startswith("cxdb_"), family.name
        if family.type == "counter":
            assert all(sample.name.endswith(("_total", "_created")) for sample in family.samples), family.name
        assert not any("/v1/contexts/1" in str(sample.labels) for sample in family.samples)  # templates only


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--metrics", "off")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "/metrics", timeout=10)
        assert refused.value.code == 404
        refused.value.close()
    finally:
        assert server.stop() == 0


def test_batched_counts_equal_counting_one_by_one() -> None:
    """Requests are counted in the process and added to the instruments in batches; a batch must give
    exactly what observing each request would (this also guards the histogram internals it uses)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from cxdb.metrics import LATENCY_BUCKETS, STORE_FIGURES, Metrics

    metrics = Metrics()
    reference = Histogram("cxdb_http_request_duration_seconds", "Time to answer a request.", ("route",),
                          buckets=LATENCY_BUCKETS, registry=None)
    samples = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.02, 0.4, 1.0, 7.5, 30.0]
    for seconds in samples:
        metrics.observe_request("/r", "GET", 200, seconds)
        reference.labels("/r").observe(seconds)
    figures = dict.fromkeys(STORE_FIGURES, 0)
    text = metrics.scrape(figures).decode()
    registry = CollectorRegistry()
    registry.register(reference)
    expected = generate_latest(registry).decode()
    ours = {line for line in text.splitlines() if line.startswith("cxdb_http_request_duration_seconds_")
            and "_created" not in line}
    theirs = {line for line in expected.splitlines() if line.startswith("cxdb_http_request_duration_seconds_")
              and "_created" not in line}
    assert ours == theirs and len(ours) == len(LATENCY_BUCKETS) + 3
    assert 'cxdb_http_requests_total{method="GET",route="/r",status="200"} 10.0' in text
