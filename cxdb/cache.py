"""A bounded, thread-safe least-recently-used cache for values derived from immutable content.

Blobs, turns and descriptors never change, so a projection keyed by (content
hash, descriptor identity, render options), or a rendered page keyed by (its
newest turn, limit, view, options, registry generation), never goes stale; it
only has to be evicted when the cache is full.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["LruCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``capacity`` units of values, where ``weigh`` says how many units a value takes."""

    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda value: 1) -> None:
        self._capacity = capacity
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        if weight > self._capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, weight)
            self._size += weight
            while self._size > self._capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped

    def __len__(self) -> int:
        return len(self._items)

    @property
    def weight(self) -> int:
        """Units held now; never more than the capacity."""
        return self._size
