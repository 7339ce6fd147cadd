"""The service: every operation of the API, over the store, registry and projection.

HTTP handlers parse and validate a request, make one call here, and render
what comes back: JSON-ready dicts, or bytes for blobs and bundles.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, TypeVar

import blake3
import orjson

from .. import __version__
from ..cache import LruCache
from ..config import Settings
from ..descriptor import Descriptor, TypeRef
from ..errors import FailedDependency, NotFound, Unprocessable
from ..metrics import Metrics
from ..model import ContextRecord, TurnRecord, iso_utc
from ..projection import Projection, RenderOptions, project
from ..registry import Catalog, parse_bundle
from ..storage import Backend, RegistryMoved, StoredBundle, open_backend
from ..storage.rules import missing_context
from . import tenancy
from .appends import Appends, TurnInput
from .events import Changes
from .follow import Follower
from .lifecycle import Lifecycle
from .portability import Portability
from .registry import CatalogCache
from .tokens import Tokens
from .views import MAX_LINEAGE_CHILDREN, context_view, list_cursor, turn_head

__all__ = ["BundleBody", "Published", "Service", "TypeHint"]

T = TypeVar("T")
VIEWS = ("typed", "raw", "both")
PAGE_CACHE_BYTES = 64 * 1024 * 1024
PROJECTION_CACHE_BYTES = 64 * 1024 * 1024
MAX_CACHED_PAYLOAD = 1024 * 1024
"""A projection of a payload larger than this is not cached: it would push out many small ones, and
rendering it again costs little next to sending it."""
HINT_MODES = ("inherit", "latest", "explicit")


@dataclass(frozen=True, slots=True)
class TypeHint:
    """How the typed view picks a descriptor for each turn."""

    mode: str = "inherit"
    type_id: str | None = None
    type_version: int | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """The outcome of publishing a bundle."""

    created: bool
    etag: str


@dataclass(frozen=True, slots=True)
class BundleBody:
    """A stored bundle's JSON bytes and its strong ETag."""

    body: bytes
    etag: str


def _etag(body: bytes) -> str:
    return '"' + blake3.blake3(body).hexdigest()[:40] + '"'


class Service:
    """Every operation of the API. Owns the store it opens: ``await start()`` before use and
    ``await close()`` after, or ``async with``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._started = clock()
        self.metrics: Metrics | None = None
        if settings.metrics:
            self.metrics = Metrics(str(settings.metrics_dir) if settings.metrics_dir is not None else None)
        self.store: Backend = open_backend(settings, on_commit=self.metrics.observe_commit if self.metrics else None)
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxdb-cpu")
        self._catalogs = CatalogCache(self.store, self.offload)
        # Weighed by the payload's size: a projection holds about as many bytes as the payload it renders.
        self._projections: LruCache[tuple[bytes, TypeRef | None, RenderOptions], tuple[Projection, int]] = LruCache(
            PROJECTION_CACHE_BYTES, lambda entry: entry[1])
        self._pages: LruCache[tuple[Any, ...], tuple[bytes, tuple[int, int] | None]] = LruCache(
            PAGE_CACHE_BYTES, lambda entry: len(entry[0]))
        if self.metrics is not None:
            self.metrics.watch_cache("page", self._pages)
            self.metrics.watch_cache("projection", self._projections)
        self.changes = Changes(self.store)
        self._appends = Appends(self.store, self._catalogs, self.changes, self.offload, settings.require_registry)
        self.lifecycle = Lifecycle(self.store, settings, self.changes, clock)
        self.tokens, self.portability = Tokens(self.store, clock), Portability(self, clock)

    async def start(self) -> None:
        """Open the store, load the registry catalog (a store's bundles are read once, at start-up),
        and start the lifecycle's background work (:mod:`cxdb.service.lifecycle`)."""
        await self.store.start()
        self.changes.watch()
        await self._catalogs.current()
        if self.settings.bootstrap_token:
            await self.tokens.bootstrap(self.settings.bootstrap_token)
        self.lifecycle.start()

    async def close(self) -> None:
        await self.lifecycle.close()
        self.changes.close()
        self._cpu.shutdown(wait=True)
        await self.store.close()

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy ``fn`` on a worker thread, so the event loop keeps answering meanwhile.

        One thread: work there holds the GIL in long C calls (parsing, packing), and a second such
        thread doubles how long the loop can wait for it. A queue of waiting calls holds only their
        arguments.
        """
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn, *args)

    # -- contexts -------------------------------------------------------

    async def create_context(self, base_turn_id: int = 0, client_tag: str | None = None,
                             provenance: dict[str, Any] | None = None, namespace: str | None = None) -> dict[str, Any]:
        """Create (or, with a base turn, fork) a context. With a ``namespace``, its tag must be inside
        it, and so must the base turn's context (:mod:`cxdb.service.tenancy`)."""
        tenancy.check_new_tag(client_tag, namespace)
        await tenancy.require_base(self.store, base_turn_id, namespace)
        context = await self.store.create_context(base_turn_id, client_tag, provenance)
        self.changes.poke()
        return context_view(context, True, True, [], 0)

    async def get_context(self, context_id: int, include_provenance: bool = True,
                          include_lineage: bool = True, namespace: str | None = None) -> dict[str, Any]:
        context = await self.store.get_context(context_id)
        if not tenancy.inside(context.client_tag, namespace):
            raise missing_context(context_id)
        return await self._context(context, include_provenance, include_lineage, namespace)

    async def list_contexts(self, limit: int = 100, tag: str | None = None, include_provenance: bool = False,
                            include_lineage: bool = False, namespace: str | None = None,
                            tag_prefix: str | None = None, before: tuple[int, int] | None = None) -> dict[str, Any]:
        """Contexts, newest activity first: those tagged exactly ``tag``, and those whose tag starts
        with ``tag_prefix``, within the ``namespace``; after the page that ended at ``before``, and
        ``next_before`` for the page after this one (None on the last)."""
        prefix = tenancy.narrowest(tag_prefix or None, namespace)
        if prefix is tenancy.NOTHING:
            return {"contexts": [], "total": 0, "next_before": None}
        found, total = await self.store.list_contexts(limit + 1, tag, prefix, before)
        more = len(found) > limit
        found = found[:limit]
        return {"contexts": [await self._context(c, include_provenance, include_lineage, namespace) for c in found],
                "total": total, "next_before": list_cursor(found[-1]) if more and found else None}

    async def children(self, context_id: int, recursive: bool = False, limit: int = 256,
                       include_provenance: bool = True, include_lineage: bool = True,
                       namespace: str | None = None) -> dict[str, Any]:
        if namespace is None:
            found, total = await self.store.children(context_id, recursive, limit)
        else:
            await tenancy.require_context(self.store, context_id, namespace)
            found, total = await tenancy.children(self.store, context_id, recursive, limit, namespace)
        return {"context_id": str(context_id),
                "children": [await self._context(c, include_provenance, include_lineage, namespace) for c in found],
                "total": total}

    async def _context(self, context: ContextRecord, include_provenance: bool,
                       include_lineage: bool, namespace: str | None = None) -> dict[str, Any]:
        if not include_lineage:
            return context_view(context, include_provenance, False)
        if namespace is not None:
            shown, kids, count = await tenancy.lineage(self.store, context, namespace)
            return context_view(shown, include_provenance, True, kids, count)
        kids, count = await self.store.child_ids(context.context_id, MAX_LINEAGE_CHILDREN)
        return context_view(context, include_provenance, True, kids, count)

    # -- turns ----------------------------------------------------------

    async def append(self, context_id: int, type_id: str, type_version: int, data: dict[str, Any],
                     parent_turn_id: int | None = None, idempotency_key: str | None = None,
                     large: bool = False, expected_head_turn_id: int | None = None,
                     namespace: str | None = None) -> tuple[dict[str, Any], bool]:
        """Append a turn; returns its view and whether it was an idempotent replay. With
        ``expected_head_turn_id``, only if the head is that turn when the append commits.

        ``large`` moves the CPU work on ``data`` (fingerprint, encoding) to a worker thread.
        """
        await self._inside(context_id, namespace, parent_turn_id)
        results = await self._appends.append(context_id, [TurnInput(type_id, type_version, data, idempotency_key)],
                                             parent_turn_id, expected_head_turn_id, large, batch=False)
        result = results[0]
        turn = result.turn
        view: dict[str, Any] = {"context_id": str(turn.context_id), "turn_id": str(turn.turn_id),
                                "parent_turn_id": str(turn.parent_turn_id), "depth": turn.depth,
                                "content_hash": turn.content_hash.hex()}
        if result.replaced_head_turn_id is not None:
            view["replaced_head_turn_id"] = str(result.replaced_head_turn_id)
        return view, result.replayed

    async def append_batch(self, context_id: int, items: Sequence[TurnInput], parent_turn_id: int | None = None,
                           expected_head_turn_id: int | None = None,
                           large: bool = False, namespace: str | None = None) -> tuple[dict[str, Any], bool]:
        """Append ``items`` as a chain, all in one transaction or none; an invalid item is an error
        naming its ``index``. Returns the view and whether the whole batch was a replay."""
        await self._inside(context_id, namespace, parent_turn_id)
        results = await self._appends.append(context_id, items, parent_turn_id, expected_head_turn_id, large,
                                             batch=True)
        last = results[-1].turn
        view: dict[str, Any] = {"context_id": str(context_id), "head_turn_id": str(last.turn_id),
                                "head_depth": last.depth,
                                "turns": [{"turn_id": str(r.turn.turn_id), "depth": r.turn.depth,
                                           "content_hash": r.turn.content_hash.hex()} for r in results]}
        if results[0].replaced_head_turn_id is not None:
            view["replaced_head_turn_id"] = str(results[0].replaced_head_turn_id)
        return view, results[0].replayed

    async def follow(self, context_id: int, view: str = "typed", hint: TypeHint | None = None,
                     options: RenderOptions | None = None, after_turn_id: int | None = None, tail: int = 0,
                     resume: bool = False, namespace: str | None = None) -> Follower:
        """A follower of a context: after ``after_turn_id`` (0: from the first turn), else after the
        newest ``tail`` turns. Checks everything a page would before anything is sent: NotFound for a
        missing context or an ``after_turn_id`` off the head's chain (unless ``resume``: a client
        reconnecting after the head moved away gets a rebase instead), the hint's type.
        """
        hint = hint or TypeHint()
        options = options or RenderOptions()
        await self._inside(context_id, namespace)
        _, position = await self.store.event_bounds()  # before the head: no change in between is missed
        context, head, generation = await self.store.page_start(context_id)
        await self._catalog(generation, hint)
        if after_turn_id is not None:
            last = await self._follow_from(context, after_turn_id, resume)
        elif tail:
            depth = max(0, context.head_depth - tail)
            last = (await self.store.ancestor(head, depth), depth)
        else:
            last = (head, context.head_depth)

        async def render(chain: list[TurnRecord], generation: int) -> list[bytes]:
            return await self.render_turns(chain, generation, view, hint, options)

        budget = self.settings.max_page_bytes // (1 if view == "typed" else 2)
        return Follower(self.store, self.changes, render, budget, context_id, last, position)

    async def _follow_from(self, context: ContextRecord, turn_id: int, resume: bool) -> tuple[int, int]:
        if turn_id == 0:
            return 0, 0
        missing = NotFound(f"Turn {turn_id} is not on context {context.context_id}",
                           {"after_turn_id": str(turn_id), "context_id": str(context.context_id)})
        found = await self.store.turn(turn_id)
        if found is None:
            raise missing
        depth = found.depth
        if not resume and await self.store.ancestor(context.head_turn_id, depth) != turn_id:
            raise missing
        return turn_id, depth

    async def turn_json(self, context_id: int, turn_id: int, view: str = "typed", hint: TypeHint | None = None,
                        options: RenderOptions | None = None, namespace: str | None = None) -> bytes:
        """Exactly one turn of a context, shaped as a page: whole (no ``string_limit``). NotFound
        unless the turn is on the chain of the context's head or of a replaced head."""
        hint = hint or TypeHint()
        options = replace(options or RenderOptions(), string_limit=None)
        await self._inside(context_id, namespace)
        context, _, generation = await self.store.page_start(context_id)
        catalog, _ = await self._catalog(generation, hint)
        found = await self.store.turn_in_context(context_id, turn_id) if turn_id else None
        if found is None:
            raise NotFound(f"Turn {turn_id} is not on context {context_id}",
                           {"turn_id": str(turn_id), "context_id": str(context_id)})
        rendered = await self.render_turns([found], generation, view, hint, options)
        return self._meta(context, catalog) + b',"turns":[' + rendered[0] + b'],"next_before_turn_id":null}'

    async def head_history(self, context_id: int, limit: int = 64, before: int | None = None,
                           namespace: str | None = None) -> dict[str, Any]:
        """The heads appends moved the context away from, newest first."""
        await self._inside(context_id, namespace)
        entries, more = await self.store.head_history(context_id, limit, before)
        return {"context_id": str(context_id),
                "heads": [{"head_turn_id": str(e.head_turn_id), "head_depth": e.head_depth,
                           "replaced_by_turn_id": str(e.replaced_by_turn_id), "replaced_at": iso_utc(e.replaced_at_ms)}
                          for e in entries],
                "next_before": None if more is None else str(more)}

    async def provenance(self, context_id: int, namespace: str | None = None) -> dict[str, Any]:
        context = await self.store.get_context(context_id)
        if not tenancy.inside(context.client_tag, namespace):
            raise missing_context(context_id)
        return {"context_id": str(context_id), "provenance": context.provenance}

    async def get_turns(self, context_id: int, limit: int = 64, before_turn_id: int | None = None,
                        view: str = "typed", hint: TypeHint | None = None,
                        options: RenderOptions | None = None) -> dict[str, Any]:
        """A page of turns ending at the head (or before a cursor), oldest first, as a dict."""
        page: dict[str, Any] = orjson.loads(await self.page_json(context_id, limit, before_turn_id, view, hint,
                                                                 options))
        return page

    async def page_json(self, context_id: int, limit: int = 64, before_turn_id: int | None = None,
                  view: str = "typed", hint: TypeHint | None = None,
                  options: RenderOptions | None = None, namespace: str | None = None) -> bytes:
        """A page of turns as JSON bytes.

        The turns below a page's newest turn never change, so their rendering is
        cached by (newest turn, limit, view, hint, options, registry generation);
        only ``meta`` is rendered per request.
        """
        hint = hint or TypeHint()
        options = options or RenderOptions()
        if namespace is not None:
            await self._inside(context_id, namespace)
        context, start, generation = await self.store.page_start(context_id, before_turn_id)
        catalog, forced = await self._catalog(generation, hint)
        if limit == 0:
            # No turns, but the cursor the next page would use: the given one, while older turns exist.
            # (Without a cursor the next page is the head's own, which is asked for without one.)
            rendered = b',"turns":[],"next_before_turn_id":' + orjson.dumps(
                str(before_turn_id) if before_turn_id and start else None) + b"}"
            return self._meta(context, catalog) + rendered
        key = (start, limit, view, hint, options, len(catalog.bundle_ids))
        cached = self._pages.get(key)
        if cached is None:
            cached = await self._render_chain(start, limit, view, hint, options, catalog, forced)
            self._pages.put(key, cached)
        rendered, cursor = cached
        if cursor is not None:
            self.store.note_cursor(context, *cursor)
        return self._meta(context, catalog) + rendered

    async def _inside(self, context_id: int, namespace: str | None, parent_turn_id: int | None = None) -> None:
        """NotFound unless the context is inside ``namespace``; a parent turn outside it is a parent
        not found (:mod:`cxdb.service.tenancy`). Nothing to check without a namespace."""
        if namespace is not None:
            await tenancy.require_context(self.store, context_id, namespace)
            await tenancy.require_parent(self.store, context_id, parent_turn_id, namespace)

    @staticmethod
    def _meta(context: ContextRecord, catalog: Catalog) -> bytes:
        meta = orjson.dumps({"context_id": str(context.context_id), "head_turn_id": str(context.head_turn_id),
                             "head_depth": context.head_depth, "registry_bundle_id": catalog.latest_bundle_id})
        return b'{"meta":' + meta

    async def _render_chain(self, start: int, limit: int, view: str, hint: TypeHint, options: RenderOptions,
                      catalog: Catalog, forced: Descriptor | None) -> tuple[bytes, tuple[int, int] | None]:
        """The page's JSON after ``meta``, and (next cursor, its parent) when there are older turns.

        Turns are rendered newest first until the next one would take the page past
        ``max_page_bytes`` (one turn is always sent), so a page of big turns stops early and its
        cursor continues from there. Payloads are read in groups whose stored sizes fit what is
        left of the budget, so a page never holds much more than it sends.
        """
        chain, next_before = await self.store.chain(start, limit)
        chain.reverse()  # newest first
        budget = self.settings.max_page_bytes
        lookup = _lookup(catalog)
        rendered: list[bytes] = []
        used = 0
        index = 0
        full = False
        while index < len(chain) and not full:
            group = _group(chain, index, budget - used, 1 if view == "typed" else 2)
            payloads = await self.store.payloads(turn.content_hash for turn in group)
            for turn in group:
                text = self._render_turn(turn, payloads.get(turn.content_hash), view, hint, options, catalog,
                                         forced, lookup)
                if rendered and used + len(text) + 1 > budget:
                    next_before = chain[index - 1].turn_id  # the oldest turn sent: older ones follow
                    chain = chain[:index]
                    full = True
                    break
                rendered.append(text)
                used += len(text) + 1
                index += 1
        rendered.reverse()
        body = (b',"turns":[' + b",".join(rendered) + b'],"next_before_turn_id":'
                + orjson.dumps(None if next_before is None else str(next_before)) + b"}")
        if next_before is None:
            return body, None
        return body, (next_before, chain[-1].parent_turn_id)

    async def _catalog(self, generation: int, hint: TypeHint) -> tuple[Catalog, Descriptor | None]:
        """The catalog at a registry generation, and the descriptor an explicit hint forces."""
        catalog = self._catalogs.cached
        if generation != len(catalog.bundle_ids):  # the registry changed: catch up (off the hot path)
            catalog = await self._catalogs.at(generation)
        if hint.mode != "explicit":
            return catalog, None
        if hint.type_id is None or hint.type_version is None:
            raise Unprocessable("type_hint_mode=explicit needs as_type_id and as_type_version",
                                {"field": "as_type_id" if hint.type_id is None else "as_type_version"})
        forced = catalog.descriptor(hint.type_id, hint.type_version)
        if forced is None:
            raise FailedDependency(f"type {hint.type_id} v{hint.type_version} is not registered",
                                   {"type_id": hint.type_id, "type_version": hint.type_version})
        return catalog, forced

    async def render_turns(self, chain: list[TurnRecord], generation: int, view: str, hint: TypeHint,
                           options: RenderOptions) -> list[bytes]:
        """Each turn's JSON exactly as a page renders it, with the registry at ``generation``. The
        caller bounds how many payload bytes ``chain`` holds."""
        catalog, forced = await self._catalog(generation, hint)
        payloads = await self.store.payloads(turn.content_hash for turn in chain)
        lookup = _lookup(catalog)
        return [self._render_turn(turn, payloads.get(turn.content_hash), view, hint, options, catalog, forced,
                                  lookup) for turn in chain]

    def _render_turn(self, turn: TurnRecord, raw: bytes | None, view: str, hint: TypeHint, options: RenderOptions,
                     catalog: Catalog, forced: Descriptor | None,
                     lookup: Callable[[TypeRef], Descriptor | None]) -> bytes:
        item = turn_head(turn)
        if view != "raw":
            descriptor = forced or self._descriptor_for(catalog, turn, hint.mode)
            item.update(self._typed(turn, raw, descriptor, lookup, options))
        if view != "typed":
            item.update(_raw_fields(turn, raw))
        return orjson.dumps(item)

    @staticmethod
    def _descriptor_for(catalog: Catalog, turn: TurnRecord, mode: str) -> Descriptor | None:
        if mode == "latest":
            return catalog.latest_descriptor(turn.type_id)
        return catalog.descriptor(turn.type_id, turn.type_version)

    def _typed(self, turn: TurnRecord, raw: bytes | None, descriptor: Descriptor | None,
               lookup: Callable[[TypeRef], Descriptor | None], options: RenderOptions) -> dict[str, Any]:
        if raw is None:
            return {"decoded_as": None, "data": None,
                    "error": {"code": "BLOB_MISSING", "message": "the turn's payload is missing"}}
        projection_key = (turn.content_hash, descriptor.ref if descriptor else None, options)
        cached = self._projections.get(projection_key)
        if cached is None:
            projection = project(raw, descriptor, lookup, options)
            if len(raw) <= MAX_CACHED_PAYLOAD:
                self._projections.put(projection_key, (projection, 2 * len(raw) + 256))
        else:
            projection = cached[0]
        typed = projection.decoded_as
        out: dict[str, Any] = {
            "decoded_as": {"type_id": typed.type_id, "type_version": typed.version} if typed else None,
            "data": projection.data,
        }
        if projection.unknown is not None:
            out["unknown"] = projection.unknown
        if projection.error is not None:
            out["error"] = projection.error
        if projection.truncated is not None:
            out["truncated"] = projection.truncated
        return out

    # -- registry -------------------------------------------------------

    async def publish_bundle(self, bundle_id: str, value: Any, published_at_ms: int | None = None) -> Published:
        """Publish a bundle (at ``published_at_ms``: an import); ``created`` is False when an equal one was.

        The check runs on a worker thread (a big bundle takes a while); the writer only confirms that
        no other bundle was published meanwhile, or the check runs again."""
        bundle = await self.offload(parse_bundle, value)
        if bundle.bundle_id != bundle_id:
            raise Unprocessable("the body's bundle_id does not match the path",
                                {"field": "bundle_id", "path_bundle_id": bundle_id,
                                 "body_bundle_id": bundle.bundle_id})
        while True:
            catalog = await self._catalogs.current()
            candidate = None
            if bundle_id not in catalog.bundle_ids:  # else the writer compares it with the stored one
                candidate = await self.offload(catalog.with_bundle, bundle)
            try:
                generation = len(catalog.bundle_ids)
                stored, created = await self.store.publish_bundle(bundle_id, bundle.body, generation, published_at_ms)
            except RegistryMoved:
                continue
            if created:
                self.changes.poke()
                if candidate is not None:
                    self._catalogs.install(candidate)
            return Published(created, _etag(stored.body))

    async def get_bundle(self, bundle_id: str) -> BundleBody:
        stored = await self.store.get_bundle(bundle_id)
        return BundleBody(stored.body, _etag(stored.body))

    async def list_bundles(self) -> dict[str, Any]:
        return {"bundles": [_bundle_entry(item) for item in await self.store.bundles()]}

    async def get_type_version(self, type_id: str, type_version: int) -> dict[str, Any]:
        catalog = await self._catalogs.current()
        descriptor = catalog.descriptor(type_id, type_version)
        if descriptor is None:
            raise NotFound(f"type {type_id} v{type_version} not found",
                           {"type_id": type_id, "type_version": type_version})
        fields = orjson.loads(catalog.raw_versions[(type_id, type_version)])["fields"]
        return {"type_id": type_id, "type_version": type_version, "fields": fields,
                "bundle_id": descriptor.bundle_id}

    async def list_types(self) -> dict[str, Any]:
        catalog = await self._catalogs.current()
        return {"types": [{"type_id": s.type_id, "latest_version": s.latest_version, "bundle_id": s.bundle_id}
                          for s in catalog.summaries()]}

    # -- blobs, health, stats -------------------------------------------

    async def get_blob(self, digest: bytes) -> bytes:
        return await self.store.get_blob(digest)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "uptime_seconds": int(self._clock() - self._started)}

    async def stats(self) -> dict[str, Any]:
        reclaiming = await self.lifecycle.pending()  # first: zeros here mean the counters after are final
        stats = await self.store.stats()
        oldest, newest = await self.store.event_bounds()
        return {"contexts": stats.contexts, "turns": stats.turns, "blobs": stats.blobs,
                "storage_bytes": stats.storage_bytes, "dedup_hit_rate": round(stats.dedup_hit_rate, 6),
                "blob_stored_bytes": stats.blob_stored_bytes, "blob_raw_bytes": stats.blob_raw_bytes,
                "dedup_hits": stats.dedup_hits, "oldest_event_sequence": str(oldest),
                "newest_event_sequence": str(newest), "reclaiming": reclaiming}

    def event_filter(self, namespace: str) -> tenancy.ContextFilter:
        """What a stream of events for a token with ``namespace`` may send."""
        return tenancy.ContextFilter(self.store, namespace)

    async def event_bounds(self) -> tuple[int, int]:
        """(oldest, newest) retained event sequence; oldest is 0 when none is retained."""
        return await self.store.event_bounds()

    # -- access records (tokens, MCP sessions): opaque to the store --------

    async def access_record(self, name: str) -> bytes | None:
        return await self.store.auth_entry(name)

    async def access_records(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        return await self.store.auth_entries(prefix, limit)

    async def save_access_record(self, name: str, value: bytes) -> None:
        await self.store.put_auth_entry(name, value, replace=True)

    async def delete_access_record(self, name: str) -> None:
        await self.store.delete_auth_entry(name)

    async def check(self) -> dict[str, Any]:
        return await self.store.check()

    async def metrics_text(self) -> bytes | None:
        """The Prometheus text of the metrics, or None when they are off."""
        if self.metrics is None:
            return None
        return self.metrics.scrape(await self.store.figures())

    def cache_bytes(self) -> dict[str, int]:
        """Bytes held by the page and projection caches (each bounded, by bytes)."""
        return {"pages": self._pages.weight, "projections": self._projections.weight}


def _group(chain: list[TurnRecord], index: int, room: int, factor: int) -> list[TurnRecord]:
    """The turns from ``index`` on whose payloads, at ``factor`` bytes of JSON per stored byte, fit in
    ``room``; at least one."""
    end = index + 1
    total = chain[index].uncompressed_len * factor
    while end < len(chain) and total + chain[end].uncompressed_len * factor <= room:
        total += chain[end].uncompressed_len * factor
        end += 1
    return chain[index:end]


def _lookup(catalog: Catalog) -> Callable[[TypeRef], Descriptor | None]:
    return lambda ref: catalog.descriptor(ref.type_id, ref.version)


def _raw_fields(turn: TurnRecord, raw: bytes | None) -> dict[str, Any]:
    return {"content_hash_b3": turn.content_hash.hex(), "encoding": turn.encoding,
            "compression": turn.compression, "uncompressed_len": turn.uncompressed_len,
            "bytes_b64": base64.b64encode(raw).decode() if raw is not None else None}


def _bundle_entry(stored: StoredBundle) -> dict[str, Any]:
    return {"bundle_id": stored.bundle_id, "sequence": stored.sequence,
            "published_at": iso_utc(stored.published_at_ms)}
