"""Prometheus metrics: what a running server is doing, summed over its workers.

Two sources:

- **The store's own counters** (appends, contexts, payload bytes, dedup hits and misses, bundles,
  map size and bytes used) are read at scrape time. They are durable and shared by every worker, so
  they are exact however many processes serve the store, and they cost the append path nothing.
- **Per-process instruments** (HTTP requests and latency by route template, group-commit batch sizes
  and commit latency, the writer's queue depth, cache hits and misses, open connections) live in
  prometheus-client's multiprocess files when ``cxdb serve`` runs (it sets the directory before any
  instrument exists, empties it at start-up and marks dead workers), and in an app's own registry
  otherwise, as in tests.

Names follow Prometheus conventions: ``cxdb_`` prefix, ``_total`` counters, ``_seconds`` and
``_bytes`` units. Labels are route templates, never raw paths, so their number stays bounded.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "STORE_FIGURES", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


_STORE_COUNTERS = (
    ("appends", "cxdb_appends_total", "Turns appended (idempotent replays excluded)."),
    ("contexts", "cxdb_contexts_created_total", "Contexts created, forks included."),
    ("payload_bytes", "cxdb_payload_bytes_total", "Uncompressed payload bytes of the blobs stored."),
    ("stored_bytes", "cxdb_blob_stored_bytes_total", "Bytes the stored blobs take, compressed."),
    ("dedup_hits", "cxdb_dedup_hits_total", "Appends whose payload was already stored."),
    ("dedup_misses", "cxdb_dedup_misses_total", "Appends that stored a new payload."),
    ("bundles", "cxdb_bundles_published_total", "Registry bundles published."),
)
_STORE_GAUGES = (
    ("blobs", "cxdb_blobs", "Blobs stored."),
    ("map_size", "cxdb_store_map_size_bytes",
     "The LMDB map size: address space reserved for the store (0 on PostgreSQL)."),
    ("used_bytes", "cxdb_store_used_bytes",
     "Bytes the store takes: of the LMDB data file in use, or of cxdb's PostgreSQL tables and indexes."),
)
STORE_FIGURES = tuple(key for key, _, _ in (*_STORE_COUNTERS, *_STORE_GAUGES))
"""The store's counters a scrape reports (:meth:`cxdb.storage.base.Backend.figures`)."""


class _StoreCollector:
    """Reports the store's counters, as read for the scrape in progress."""

    def __init__(self) -> None:
        self.figures: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        if not figures:
            return
        for key, name, documentation in _STORE_COUNTERS:
            counter = CounterMetricFamily(name.removesuffix("_total"), documentation)
            counter.add_metric([], figures[key])
            yield counter
        for key, name, documentation in _STORE_GAUGES:
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], figures[key])
            yield gauge


class Metrics:
    """The instruments of one app, and the scrape that reports them.

    ``multiprocess_dir`` names prometheus-client's multiprocess directory when the process runs in
    that mode (then the instruments write there, and a scrape sums every worker's files).
    """

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        own = None if multiprocess_dir else CollectorRegistry()
        self._scrape = CollectorRegistry()
        if multiprocess_dir:
            MultiProcessCollector(self._scrape, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            assert own is not None
            self._scrape = own
        self._store = _StoreCollector()
        self._scrape.register(self._store)
        instrument: dict[str, Any] = {"registry": own}
        self.requests = Counter("cxdb_http_requests_total", "HTTP requests answered.",
                                ("route", "method", "status"), **instrument)
        self.latency = Histogram("cxdb_http_request_duration_seconds", "Time to answer a request.",
                                 ("route",), buckets=LATENCY_BUCKETS, **instrument)
        self.batch = Histogram("cxdb_commit_batch_operations", "Write operations per group commit.",
                               buckets=BATCH_BUCKETS, **instrument)
        self.commit = Histogram("cxdb_commit_duration_seconds", "Time of one group commit, fsync included.",
                                buckets=LATENCY_BUCKETS, **instrument)
        self.queue = Gauge("cxdb_writer_queue_depth", "Write operations waiting for the writer after a commit.",
                           multiprocess_mode="livesum", **instrument)
        self.cache = Counter("cxdb_cache_lookups_total", "Page and projection cache lookups.",
                             ("cache", "result"), **instrument)
        self.connections = Gauge("cxdb_http_connections", "Open HTTP connections.",
                                 multiprocess_mode="livesum", **instrument)
        self.streams = Gauge("cxdb_streams_open", "Open event and follow streams, SSE and WebSocket.",
                             multiprocess_mode="livesum", **instrument)
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._requests: dict[tuple[str, str, int], list[Any]] = {}  # key -> [count, seconds, per-bucket counts]
        self._caches: dict[str, tuple[Any, list[int]]] = {}  # name -> (cache, [hits, misses] counted so far)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request. The count waits in this process until :meth:`flush`: an update of the shared
        files takes a lock and a write to the mapping, several per request, where this is a dict lookup."""
        entry = self._requests.get((route, method, status))
        if entry is None:
            entry = self._requests[(route, method, status)] = [0, 0.0, [0] * len(self._bounds)]
        entry[0] += 1
        entry[1] += seconds
        entry[2][bisect.bisect_left(self._bounds, seconds)] += 1

    def observe_commit(self, operations: int, seconds: float, waiting: int) -> None:
        self.batch.observe(operations)
        self.commit.observe(seconds)
        self.queue.set(waiting)

    def watch_cache(self, name: str, cache: Any) -> None:
        """Report the lookups of ``cache`` (anything with ``hits`` and ``misses`` counts) under ``name``:
        its own counts are read at each flush, so a lookup costs the metrics nothing."""
        self._caches[name] = (cache, [cache.hits, cache.misses])

    def flush(self) -> None:
        """Add the counts waiting in this process to the instruments. The server calls it every second
        (each worker for itself) and before every scrape, so a figure is at most a second behind.
        Called from the event loop only, like the counting."""
        requests, self._requests = self._requests, {}
        for (route, method, status), (count, seconds, buckets) in requests.items():
            self.requests.labels(route, method, str(status)).inc(count)
            child = self.latency.labels(route)
            # The histogram takes a whole batch through its bucket values (prometheus-client keeps them
            # per bucket, not cumulated); tests/test_metrics.py checks this equals observing one by one.
            child._sum.inc(seconds)
            for index, number in enumerate(buckets):
                if number:
                    child._buckets[index].inc(number)
        for name, (cache, counted) in self._caches.items():
            hits, misses = cache.hits, cache.misses
            if hits > counted[0]:
                self.cache.labels(name, "hit").inc(hits - counted[0])
            if misses > counted[1]:
                self.cache.labels(name, "miss").inc(misses - counted[1])
            counted[0], counted[1] = hits, misses

    def scrape(self, store_figures: dict[str, int]) -> bytes:
        """The Prometheus text format of every figure; ``store_figures`` are the store's counters, read by
        the caller (a database may have to be asked)."""
        self.flush()
        self._store.figures = store_figures
        return generate_latest(self._scrape)
