"""A bounded cache of rendered projections.

Blobs and descriptors are immutable, so a projection is fully determined by
(content hash, descriptor identity, render options) and never goes stale.
"""

from __future__ import annotations

from collections import OrderedDict

from ..descriptor import Descriptor
from ..projection import Projection, RenderOptions

__all__ = ["ProjectionCache"]

_Key = tuple[bytes, str | None, int, RenderOptions]


class ProjectionCache:
    """Least-recently-used projections, at most ``capacity`` of them."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._capacity = capacity
        self._items: OrderedDict[_Key, Projection] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(digest: bytes, descriptor: Descriptor | None, options: RenderOptions) -> _Key:
        if descriptor is None:
            return (digest, None, 0, options)
        return (digest, descriptor.type_id, descriptor.version, options)

    def get(self, digest: bytes, descriptor: Descriptor | None, options: RenderOptions) -> Projection | None:
        key = self._key(digest, descriptor, options)
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return found

    def put(self, digest: bytes, descriptor: Descriptor | None, options: RenderOptions,
            projection: Projection) -> None:
        if self._capacity <= 0:
            return
        self._items[self._key(digest, descriptor, options)] = projection
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
