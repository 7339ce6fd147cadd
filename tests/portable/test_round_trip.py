"""Export and import round trips over generated stores, on both backends: LMDB -> file -> LMDB, and
LMDB -> PostgreSQL -> LMDB. What comes back exports to the same bytes (header aside) and pages the same
typed JSON, byte for byte; importing again adds nothing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import msgpack
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb.config import Settings
from cxdb.errors import CxdbError
from cxdb.portable import Selection
from cxdb.service import Service
from tests.conftest import BUNDLES, POSTGRES, PostgresSchema

_APPEND = st.tuples(st.just("append"), st.integers(0, 50), st.one_of(st.none(), st.none(), st.integers(0, 200)),
                    st.one_of(st.none(), st.text(min_size=1, max_size=8)), st.booleans(), st.text(max_size=30))
OPS = st.tuples(
    st.tuples(st.just("create"), st.sampled_from([None, "runs/a", "eval/b", "runs/c"]), st.booleans()),
    st.lists(st.one_of(
        st.tuples(st.just("create"), st.sampled_from([None, "runs/a", "eval/b", "runs/c"]), st.booleans()),
        st.tuples(st.just("fork"), st.integers(0, 50), st.sampled_from([None, "runs/f"])),
        _APPEND, _APPEND, _APPEND, _APPEND,
        st.tuples(st.just("bundle"))), min_size=5, max_size=60)).map(lambda ops: [ops[0], *ops[1]])


async def build(service: Service, ops: list[tuple[Any, ...]]) -> None:
    """Apply generated operations: creates, forks, appends (typed or not, with random explicit parents,
    so heads get replaced, and idempotency keys), bundle publishes."""
    store = service.store
    contexts: list[int] = []
    turns: list[int] = []
    published = False
    for op in ops:
        try:
            if op[0] == "create":
                provenance = {"on_behalf_of": "tests", "n": len(contexts)} if op[2] else None
                contexts.append((await store.create_context(0, op[1], provenance)).context_id)
            elif op[0] == "fork" and turns:
                contexts.append((await store.create_context(turns[op[1] % len(turns)], op[2])).context_id)
            elif op[0] == "append" and contexts:
                _, which, parent, key, typed, text = op
                payload = msgpack.packb({1: 2, 2: text} if typed else {"text": text, "n": len(turns)})
                type_id = "cxdb.chat.Message" if typed else "demo.Note"
                result = await store.append(contexts[which % len(contexts)], type_id, 1, payload,
                                            turns[parent % len(turns)] if parent is not None and turns else None,
                                            key)
                if not result.replayed:
                    turns.append(result.turn.turn_id)
            elif op[0] == "bundle" and not published:
                body = orjson.loads((BUNDLES / "conversation-v1.json").read_bytes())
                await service.publish_bundle(body["bundle_id"], body)
                published = True
        except CxdbError:
            pass  # a key reused with another payload: refused, as it should be


async def exported(service: Service, selection: Selection | None = None) -> bytes:
    return b"".join([line async for line in service.portability.export_lines(selection or Selection())])


async def chunks(data: bytes) -> Any:
    for start in range(0, len(data), 1000):
        yield data[start:start + 1000]


async def pages(service: Service) -> list[bytes]:
    found = []
    after = 0
    while ids := await service.store.context_ids(after, 100):
        for context_id in ids:
            found.append(await service.page_json(context_id, limit=1000, view="typed"))
            found.append(orjson.dumps(await service.head_history(context_id, limit=1000)))
        after = ids[-1]
    return found


def body(export: bytes) -> bytes:
    return export.split(b"\n", 1)[1]  # all but the header (its source and time)


async def round_trip(ops: list[tuple[Any, ...]], stores: list[str]) -> None:
    services = [Service(Settings(store=url, port=0)) for url in stores]
    for service in services:
        await service.start()
    try:
        await build(services[0], ops)
        data = await exported(services[0])
        for target in services[1:]:
            report = await target.portability.import_chunks(chunks(data))
            assert report.id_map == {"same": True}
            again = await target.portability.import_chunks(chunks(data))
            assert again.nothing_new and again.written.turns_present == report.written.turns
            assert body(await exported(target)) == body(data)
            assert await pages(target) == await pages(services[0])
            assert (await target.check())["ok"]
            data = await exported(target)
    finally:
        for service in services:
            await service.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_lmdb_file_lmdb(tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    base = tmp_path / uuid.uuid4().hex  # a fresh pair of stores for each example
    asyncio.run(round_trip(ops, [str(base / "a"), str(base / "b")]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_lmdb_postgres_lmdb(tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    if POSTGRES is None:
        import pytest

        pytest.skip("CXDB_TEST_POSTGRES is not set")
    schema = PostgresSchema()
    try:
        base = tmp_path / uuid.uuid4().hex
        asyncio.run(round_trip(ops, [str(base / "a"), schema.url, str(base / "b")]))
    finally:
        schema.drop()


@given(st.lists(st.integers(0, (1 << 64) - 1) | st.integers(0, 300_000), max_size=200),
       st.lists(st.integers(0, (1 << 64) - 1) | st.integers(0, 300_000), max_size=50))
def test_the_exporters_set_of_turns_written_is_a_set(added: list[int], probes: list[int]) -> None:
    from cxdb.portable.exporter import _Marks

    marks = _Marks()
    for turn_id in added:
        marks.add(turn_id)
    assert all(turn_id in marks for turn_id in added)
    assert all((turn_id in marks) == (turn_id in set(added)) for turn_id in probes + [t + 1 for t in added])
