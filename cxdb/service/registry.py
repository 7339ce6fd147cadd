"""The registry as the service sees it: a catalog cached per registry generation."""

from __future__ import annotations

import threading

import orjson

from ..registry import Catalog, ParsedBundle, parse_bundle
from ..storage import Store, StoredBundle

__all__ = ["CatalogCache"]


def _parse_stored(stored: StoredBundle) -> ParsedBundle:
    return parse_bundle(orjson.loads(stored.body))


class CatalogCache:
    """Holds the catalog of the newest registry generation seen.

    The generation is the number of bundles published (a catalog's
    ``len(bundle_ids)``), read from the store on each use, so a bundle
    published by another process is picked up too.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._catalog = Catalog()

    @property
    def cached(self) -> Catalog:
        """The newest catalog seen, without asking the store; the writer verifies it is still current."""
        return self._catalog

    def current(self) -> Catalog:
        return self.at(self._store.registry_generation())

    def at(self, generation: int) -> Catalog:
        """The catalog, reloaded first when the store's registry generation (read by the caller,
        in a snapshot of its own) differs from the one cached."""
        if generation != len(self._catalog.bundle_ids):
            self.install(Catalog.from_bundles(_parse_stored(item) for item in self._store.bundles()))
        return self._catalog

    def admit(self, stored: list[StoredBundle], bundle: ParsedBundle) -> Catalog:
        """The catalog with ``bundle`` added to ``stored``; raises to reject it. Runs in the writer."""
        base = self._catalog
        if len(stored) != len(base.bundle_ids):
            base = Catalog.from_bundles(_parse_stored(item) for item in stored)
        return base.with_bundle(bundle)

    def install(self, catalog: Catalog) -> None:
        """Make ``catalog`` current unless a newer one already is."""
        with self._lock:
            if len(catalog.bundle_ids) >= len(self._catalog.bundle_ids):
                self._catalog = catalog
