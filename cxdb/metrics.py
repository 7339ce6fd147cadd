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

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "STORE_FIGURES", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

STORE_FIGURES = ("appends", "contexts", "blobs", "payload_bytes", "stored_bytes", "dedup_hits", "dedup_misses",
                 "bundles", "map_size", "used_bytes")
"""The store's counters a scrape reports (:meth:`cxdb.storage.base.Backend.figures`)."""

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
    ("map_size", "cxdb_store_map_size_bytes", "The LMDB map size: address space reserved for the store."),
    ("used_bytes", "cxdb_store_used_bytes", "Bytes of the data file in use."),
)


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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._caches: dict[tuple[str, bool], Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children are kept: finding one through labels() costs more than using it.
        # Routes are templates and statuses few, so this map stays small.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                               self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def observe_commit(self, operations: int, seconds: float, waiting: int) -> None:
        self.batch.observe(operations)
        self.commit.observe(seconds)
        self.queue.set(waiting)

    def cache_lookup(self, cache: str, hit: bool) -> None:
        key = (cache, hit)
        child = self._caches.get(key)
        if child is None:
            child = self._caches[key] = self.cache.labels(cache, "hit" if hit else "miss")
        child.inc()

    def scrape(self, store_figures: dict[str, int]) -> bytes:
        """The Prometheus text format of every figure; ``store_figures`` are the store's counters, read by
        the caller (a database may have to be asked)."""
        self._store.figures = store_figures
        return generate_latest(self._scrape)
