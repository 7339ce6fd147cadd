"""A big registry neither stalls writes nor slows start-up, and other processes catch up by
applying only what is new (issue 11)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cxdb.config import Settings
from cxdb.registry import Catalog
from cxdb.service import Service
from cxdb.service.registry import CatalogCache
from tests.registry.test_scale import many_types


def record_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that check bundles against a catalog (Catalog.with_bundles)."""
    threads: list[str] = []
    original = Catalog.with_bundles

    def recording(self: Catalog, bundles: Any) -> Catalog:
        threads.append(threading.current_thread().name)
        return original(self, bundles)

    monkeypatch.setattr(Catalog, "with_bundles", recording)
    return threads


async def test_a_huge_bundle_is_checked_outside_the_writer_and_the_loop(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Service(Settings(store=store_url)) as service:
        threads = record_threads(monkeypatch)
        context = await service.create_context()
        context_id = int(context["context_id"])
        publishing = asyncio.ensure_future(service.publish_bundle("big", many_types(10_000)))
        appended = 0
        while not publishing.done():  # the writer commits appends meanwhile
            await service.append(context_id, "t", 1, {"n": appended})
            appended += 1
            await asyncio.sleep(0)
        assert (await publishing).created
        assert appended >= 1
        assert threads and all(name.startswith("cxdb-cpu") for name in threads), threads
        assert (await service.list_types())["types"][0]["type_id"] == "t0"


async def test_restarting_with_a_registry_of_ten_thousand_types(store_url: str) -> None:
    """bench/registry.py measures how long this takes (target: under 1 s)."""
    settings = Settings(store=store_url)
    async with Service(settings) as service:
        assert (await service.publish_bundle("big", many_types(10_000))).created
    async with Service(settings) as service:
        assert len((await service.list_types())["types"]) == 10_000


async def test_another_process_applies_only_the_new_bundles(store_url: str) -> None:
    """A second catalog cache over the same store stands for another worker's."""
    parsed: list[int] = []

    class Counting:
        def __init__(self, store: Any) -> None:
            self.store = store

        async def registry_generation(self) -> int:
            return int(await self.store.registry_generation())

        async def bundles(self, after: int = 0) -> Any:
            found = await self.store.bundles(after)
            parsed.append(len(found))
            return found

    async with Service(Settings(store=store_url)) as service:
        other = CatalogCache(Counting(service.store))  # type: ignore[arg-type]
        for n in range(60):
            body = many_types(1, f"b{n}") | {"types": {f"x{n}": many_types(1)["types"]["t0"]}}
            assert (await service.publish_bundle(f"b{n}", body)).created
            descriptor = (await other.current()).descriptor(f"x{n}", 1)
            assert descriptor is not None and descriptor.bundle_id == f"b{n}"
        assert parsed == [1] * 60  # one new bundle read per publish, never the whole registry again
        assert (await other.current()).descriptors == (await service._catalogs.current()).descriptors


async def test_catching_up_with_a_huge_bundle_runs_off_the_event_loop(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Service(Settings(store=store_url)) as service:
        other = CatalogCache(service.store, service.offload)  # another worker's view, with its own thread
        await other.current()
        assert (await service.publish_bundle("big", many_types(10_000))).created
        threads = record_threads(monkeypatch)
        catalog = await other.current()
        assert len(catalog.latest) == 10_000
        assert threads and all(name.startswith("cxdb-cpu") for name in threads), threads
