"""Appends: turns encoded against the registry, fingerprinted for their idempotency keys, and stored
as one chain. The registry may change under an append (another process publishes): the payloads are
then encoded again against it, so a stored turn always matches the registry generation it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import blake3
import orjson

from ..codec import pack
from ..descriptor import Descriptor, TypeRef
from ..errors import CxdbError, PreconditionFailed
from ..projection import encode_typed
from ..registry import Catalog
from ..storage import AppendResult, Backend, NewTurn, RegistryMoved
from .events import Changes
from .registry import CatalogCache

__all__ = ["Appends", "TurnInput"]

Offload = Callable[..., Awaitable[Any]]


class TurnInput(NamedTuple):
    """One turn as a client sends it: its type, JSON data and idempotency key."""

    type_id: str
    type_version: int
    data: dict[str, Any]
    idempotency_key: str | None = None


class Appends:
    """The append path of the service."""

    def __init__(self, store: Backend, catalogs: CatalogCache, changes: Changes, offload: Offload,
                 require_registry: bool) -> None:
        self._store = store
        self._catalogs = catalogs
        self._changes = changes
        self._offload = offload
        self._require_registry = require_registry

    async def append(self, context_id: int, items: Sequence[TurnInput], parent_turn_id: int | None,
                     expected_head_turn_id: int | None, large: bool, batch: bool) -> list[AppendResult]:
        """Encode ``items`` against the registry (on the worker thread when ``large``) and store them as
        a chain; with ``batch``, an error about one turn names its ``index``."""
        catalog = self._catalogs.cached
        # A retry is the same request when its JSON is the same, whatever the registry did in between.
        requests = [_request(item, parent_turn_id if index == 0 else None,
                             expected_head_turn_id if index == 0 else None) for index, item in enumerate(items)]
        fingerprints = await self._offload(_fingerprints, requests) if large else _fingerprints(requests)
        while True:
            try:
                if large:
                    payloads = await self._offload(self._encode_all, catalog, items, batch)
                else:
                    payloads = self._encode_all(catalog, items, batch)
            except PreconditionFailed:
                await self._store.get_context(context_id)  # a missing context is 404 before its type's 412
                newer = await self._catalogs.current()  # another process may have registered the type since
                if len(newer.bundle_ids) == len(catalog.bundle_ids):
                    raise
                catalog = newer
                continue
            turns = [NewTurn(item.type_id, item.type_version, payload, item.idempotency_key, fingerprint)
                     for item, payload, fingerprint in zip(items, payloads, fingerprints, strict=True)]
            try:
                results = await self._store.append_batch(context_id, turns, parent_turn_id, expected_head_turn_id,
                                                        registry_generation=len(catalog.bundle_ids))
                break
            except RegistryMoved:
                # Another process published a bundle: encode against the registry as it is now.
                catalog = await self._catalogs.current()
        if not results[0].replayed:
            self._changes.poke()
        return results

    def _encode_all(self, catalog: Catalog, items: Sequence[TurnInput], batch: bool) -> list[bytes]:
        def lookup(ref: TypeRef) -> Descriptor | None:
            return catalog.descriptor(ref.type_id, ref.version)

        payloads = []
        for index, item in enumerate(items):
            try:
                descriptor = catalog.descriptor(item.type_id, item.type_version)
                if descriptor is not None:
                    payloads.append(pack(encode_typed(item.data, descriptor, lookup)))
                elif self._require_registry:
                    raise PreconditionFailed(f"type {item.type_id} v{item.type_version} is not registered",
                                             {"type_id": item.type_id, "type_version": item.type_version})
                else:
                    payloads.append(pack(item.data))
            except CxdbError as exc:
                if not batch:
                    raise
                raise type(exc)(exc.message, {"index": index, **exc.details}) from exc
        return payloads


def _request(item: TurnInput, parent_turn_id: int | None, expected_head_turn_id: int | None) -> list[Any] | None:
    """What an idempotency key stands for: the turn's JSON, and (for a batch's first turn) where it goes."""
    if item.idempotency_key is None:
        return None
    request: list[Any] = [item.type_id, item.type_version, parent_turn_id, item.data]
    if expected_head_turn_id is not None:
        request.append({"expected_head_turn_id": expected_head_turn_id})
    return request


def _fingerprints(requests: list[list[Any] | None]) -> list[bytes | None]:
    return [None if request is None else blake3.blake3(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).digest()
            for request in requests]
