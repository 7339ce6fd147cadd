"""The registry as the service sees it: a catalog cached per registry generation."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import orjson

from ..registry import Catalog, ParsedBundle, parse_bundle
from ..storage import Backend, StoredBundle

__all__ = ["CatalogCache"]


Offload = Callable[..., Awaitable[Catalog]]
"""Runs a function on a worker thread and awaits its result (:meth:`cxdb.service.Service.offload`)."""


def _parse_stored(stored: StoredBundle) -> ParsedBundle:
    return parse_bundle(orjson.loads(stored.body), strict=False)


def _catch_up(catalog: Catalog, fresh: list[StoredBundle]) -> Catalog:
    return catalog.with_bundles(_parse_stored(item) for item in fresh)


class CatalogCache:
    """Holds the catalog of the newest registry generation seen.

    The generation is the number of bundles published (a catalog's
    ``len(bundle_ids)``), read from the store on each use, so a bundle
    published by another process is picked up too.
    """

    def __init__(self, store: Backend, offload: Offload | None = None) -> None:
        self._store = store
        self._offload = offload
        self._lock = threading.Lock()
        self._catalog = Catalog()

    @property
    def cached(self) -> Catalog:
        """The newest catalog seen, without asking the store; the writer verifies it is still current."""
        return self._catalog

    async def current(self) -> Catalog:
        return await self.at(await self._store.registry_generation())

    async def at(self, generation: int) -> Catalog:
        """The catalog as of ``generation`` (read by the caller, in a snapshot of its own) or newer.

        Bundles are only ever added, so catching up applies just the ones published since the
        cached generation, whichever process published them.
        """
        cached = self._catalog
        if generation > len(cached.bundle_ids):
            fresh = await self._store.bundles(after=len(cached.bundle_ids))
            # Parsing and checking a big bundle takes a while: off the event loop, when there is a thread.
            if self._offload is not None:
                self.install(await self._offload(_catch_up, cached, fresh))
            else:
                self.install(_catch_up(cached, fresh))
        return self._catalog

    def install(self, catalog: Catalog) -> None:
        """Make ``catalog`` current unless a newer one already is."""
        with self._lock:
            if len(catalog.bundle_ids) >= len(self._catalog.bundle_ids):
                self._catalog = catalog
