"""Imports on both backends: ids kept or mapped, imports again adding nothing, each kind of bad input
naming its line and leaving the store at the last complete context; and the HTTP routes."""

from __future__ import annotations

import asyncio
import base64
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest

from cxdb import Client
from cxdb.config import Settings
from cxdb.portable import BadExport, Selection
from cxdb.service import Service
from tests.conftest import BUNDLES, LiveServer, fresh_store


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _export(service: Service, selection: Selection | None = None) -> bytes:
    return b"".join([line async for line in service.portability.export_lines(selection or Selection())])


async def _three_contexts(service: Service) -> list[int]:
    """Three contexts of two turns each, the third a fork of the first."""
    store = service.store
    made = []
    for n in range(2):
        context = await store.create_context(0, f"runs/{n}")
        for m in range(2):
            await store.append(context.context_id, "demo.Note", 1, msgpack.packb({"n": n, "m": m}),
                               idempotency_key=f"k{m}")
        made.append(context.context_id)
    fork = await store.create_context((await store.get_context(made[0])).head_turn_id, "runs/fork")
    await store.append(fork.context_id, "demo.Note", 1, msgpack.packb({"fork": True}))
    return [*made, fork.context_id]


@pytest.fixture
async def two(backend: str, tmp_path: Path) -> AsyncIterator[tuple[Service, Service]]:
    with fresh_store(backend, tmp_path / "a") as a, fresh_store(backend, tmp_path / "b") as b:
        source, target = Service(Settings(store=a, port=0)), Service(Settings(store=b, port=0))
        await source.start()
        await target.start()
        try:
            yield source, target
        finally:
            await source.close()
            await target.close()


async def test_into_a_store_with_data_ids_are_mapped_the_same_way_each_time(two: tuple[Service, Service]) -> None:
    source, target = two
    await _three_contexts(source)
    mine = await target.store.create_context(0, "local")
    await target.store.append(mine.context_id, "demo.Note", 1, msgpack.packb({"local": 1}))
    data = await _export(source)
    report = await target.portability.import_chunks(_chunks(data))
    assert report.written.contexts == 3 and report.written.turns == 5 and not report.id_map["same"]
    assert (await target.store.stats()).contexts == 4
    again = await target.portability.import_chunks(_chunks(data))
    assert again.nothing_new and again.written.contexts_present == 3 and again.written.turns_present == 5
    assert "nothing new" in again.summary()
    # A later export of the same source adds only what is new, with the same ids for the rest.
    first = (await source.store.context_ids(0, 1))[0]
    await source.store.append(first, "demo.Note", 1, msgpack.packb({"later": 1}))
    later = await target.portability.import_chunks(_chunks(await _export(source)))
    assert later.written.turns == 1 and later.written.contexts == 0  # the context catches up
    assert (await target.store.stats()).contexts == 4
    moved = await target.store.get_context(int(report.id_map["contexts"][0]["to"]) + first)
    assert moved.head_depth == 3
    assert (await target.check())["ok"]


async def test_preserve_ids_refuses_an_id_that_collides(two: tuple[Service, Service]) -> None:
    source, target = two
    await _three_contexts(source)
    await target.store.create_context(0, "local")  # context 1 here is another context
    with pytest.raises(BadExport) as caught:
        await target.portability.import_chunks(_chunks(await _export(source)), preserve=True)
    assert caught.value.details["reason"] == "id_collides" and caught.value.details["line"] == 2
    assert (await target.store.stats()).contexts == 1


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


def _join(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def _index(records: list[dict[str, Any]], kind: str, nth: int = 0) -> int:
    return [i for i, r in enumerate(records) if r.get("kind") == kind][nth]


def _bad_parent(records: list[dict[str, Any]]) -> int:
    at = _index(records, "turn", 3)  # the second context's second turn
    records[at]["parent_turn_id"] = "999"
    return at


def _bad_hash(records: list[dict[str, Any]]) -> int:
    at = _index(records, "turn", 3)
    records[at]["payload"] = base64.b64encode(b"\x81\xa1x\x01").decode()
    return at


def _bad_version(records: list[dict[str, Any]]) -> int:
    records[0]["version"] = 2
    return 0


def _bad_json(records: list[dict[str, Any]]) -> int:
    at = _index(records, "head", 1)
    records[at] = {"kind": "head", "context_id": 2}  # an id as a number: not the format's decimal string
    return at


def _long_tag(records: list[dict[str, Any]]) -> int:
    at = _index(records, "context", 1)
    records[at]["client_tag"] = "t" * 401  # more than a tag may hold (it is part of an index key)
    return at


def _long_key(records: list[dict[str, Any]]) -> int:
    records[_index(records, "idempotency_key", 2)]["key"] = "k" * 401
    return _index(records, "context", 1)  # the store refuses the context, named by its first line


def _long_type(records: list[dict[str, Any]]) -> int:
    at = _index(records, "turn", 2)
    records[at]["type_id"] = "x" * 401
    return at


def _bad_source(records: list[dict[str, Any]]) -> int:
    records[0]["source"]["store_id"] = "../" + "x" * 600
    return 0


CASES = {"parent_missing": (_bad_parent, "parent"), "hash_mismatch": (_bad_hash, "content_hash"),
         "unknown_version": (_bad_version, "unknown format version 2"), "bad_field": (_bad_json, "head_turn_id"),
         "tag_too_long": (_long_tag, "client_tag"), "key_too_long": (_long_key, "idempotency key"),
         "type_id_too_long": (_long_type, "type_id"), "bad_source": (_bad_source, "store_id")}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_input_names_its_line_and_keeps_the_complete_contexts_before_it(
        two: tuple[Service, Service], case: str) -> None:
    source, target = two
    await _three_contexts(source)
    records = _lines(await _export(source))
    spoil, says = CASES[case]
    at = spoil(records)
    with pytest.raises(BadExport) as caught:
        await target.portability.import_chunks(_chunks(_join(records)))
    assert caught.value.line == at + 1 and says in caught.value.message
    stats = await target.store.stats()
    header = case in ("unknown_version", "bad_source")
    expected = (0, 0) if header else (1, 2)  # the first context, whole; nothing of the second
    assert (stats.contexts, stats.turns) == expected
    assert (await target.check())["ok"]
    if not header:  # the good file completes it
        report = await target.portability.import_chunks(_chunks(await _export(source)))
        assert report.written.contexts == 2 and report.written.contexts_present == 1


async def test_truncated_and_corrupted_files(two: tuple[Service, Service]) -> None:
    source, target = two
    await _three_contexts(source)
    data = await _export(source)
    lines = data.splitlines(keepends=True)
    cut = _index(_lines(data), "head", 1) + 1  # up to and with the second context's head
    with pytest.raises(BadExport, match="truncated"):
        await target.portability.import_chunks(_chunks(b"".join(lines[:cut])))
    assert (await target.store.stats()).contexts == 2
    with pytest.raises(BadExport, match="not a JSON object") as caught:
        await target.portability.import_chunks(_chunks(data[:-20]))  # the end record cut in the middle
    assert caught.value.line == len(lines) and (await target.store.stats()).contexts == 3
    with pytest.raises(BadExport, match="counts"):
        await target.portability.import_chunks(_chunks(b"".join([*lines[:cut], lines[-1]])))
    with pytest.raises(BadExport, match="not a cxdb export"):
        await target.portability.import_chunks(_chunks(b'{"hello": 1}\n'))
    with pytest.raises(BadExport, match="truncated"):
        await target.portability.import_chunks(_chunks(b""))
    report = await target.portability.import_chunks(_chunks(data))
    assert report.nothing_new and report.written.contexts_present == 3


def test_over_http_export_and_import_with_admin_only(store_url: str, tmp_path: Path) -> None:
    token = "t" * 40
    server = LiveServer(store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": token})
    try:
        with Client(server.url, token=token) as admin:
            read_token = admin.create_token("cxdb:read")["token"]
            context = admin.create_context(client_tag="runs/http")
            for n in range(3):
                admin.append_turn(context["context_id"], type_id="demo.Note", type_version=1, data={"n": n},
                                  idempotency_key=f"k{n}")
        url = f"{server.url}/v1/contexts/{context['context_id']}/export"
        def get(address: str, who: str, data: bytes | None = None) -> tuple[int, bytes]:
            request = urllib.request.Request(address, data=data, headers={"Authorization": f"Bearer {who}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, answer.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        assert get(url, read_token)[0] == 403
        status, data = get(url, token)
        assert status == 200 and _lines(data)[-1] == {"kind": "end", "bundles": 0, "contexts": 1, "turns": 3}
        assert get(f"{server.url}/v1/contexts/999/export", token)[0] == 404
        status, answer = get(f"{server.url}/v1/import", token, data)
        assert status == 200 and orjson.loads(answer)["nothing_new"] is True
        status, answer = get(f"{server.url}/v1/import", token, data[:-30])
        error = orjson.loads(answer)["error"]
        assert status == 422 and error["code"] == "UNPROCESSABLE_ENTITY"
        assert error["details"]["line"] == len(data.splitlines())
    finally:
        assert server.stop() == 0


async def test_an_idempotent_retry_after_the_move_replays_the_original_turn(two: tuple[Service, Service]) -> None:
    source, target = two
    context = await source.store.create_context(0, "runs/retry")
    first = await source.store.append(context.context_id, "demo.Note", 1, msgpack.packb({"n": 1}),
                                      idempotency_key="attempt-1")
    await target.portability.import_chunks(_chunks(await _export(source)))
    again = await target.store.append(context.context_id, "demo.Note", 1, msgpack.packb({"n": 1}),
                                      idempotency_key="attempt-1")
    assert again.replayed and again.turn == first.turn


async def test_an_export_taken_while_appends_go_on_imports_whole(two: tuple[Service, Service]) -> None:
    source, target = two
    ids = await _three_contexts(source)
    store = source.store

    async def keep_writing() -> None:
        for n in range(200):
            context_id = ids[n % 3]
            head = (await store.get_context(context_id)).head_turn_id
            # Some appends branch from the first turn, so heads are replaced while the export runs.
            parent = (await store.chain(head, 1))[0][0].turn_id if n % 7 == 0 and head else None
            await store.append(context_id, "demo.Note", 1, msgpack.packb({"w": n}), parent,
                               idempotency_key=f"w{n}")
            await asyncio.sleep(0)

    async def export_slowly() -> bytes:
        parts = []
        async for line in source.portability.export_lines(Selection()):
            parts.append(line)
            await asyncio.sleep(0)  # the appends run between the export's lines
        return b"".join(parts)

    data, _ = await asyncio.gather(export_slowly(), keep_writing())
    report = await target.portability.import_chunks(_chunks(data))
    assert report.written.contexts == 3 and (await target.check())["ok"]


async def test_a_fork_exported_alone_carries_its_whole_chain(two: tuple[Service, Service]) -> None:
    source, target = two
    fork = (await _three_contexts(source))[-1]
    data = await _export(source, Selection((fork,)))
    report = await target.portability.import_chunks(_chunks(data))
    assert report.written.contexts == 1 and report.written.turns == 3  # two below the fork point, one after
    assert await target.page_json(fork, limit=10) == await source.page_json(fork, limit=10)
    assert (await target.check())["ok"]
    children, total = await target.store.children(fork)
    assert total == 0 and not children


async def test_two_imports_of_one_source_at_once_add_it_once(two: tuple[Service, Service]) -> None:
    source, target = two
    await _three_contexts(source)
    await target.store.create_context(0, "local")  # not empty: ids are mapped
    data = await _export(source)
    first, second = await asyncio.gather(*(target.portability.import_chunks(_chunks(data)) for _ in range(2)))
    assert first.id_map == second.id_map
    assert (await target.store.stats()).contexts == 4 and (await target.store.stats()).turns == 5
    assert (await target.check())["ok"]


async def test_a_line_too_long_is_refused_even_from_a_small_zstd_file() -> None:
    import zstandard

    from cxdb.portable import lines

    bomb = zstandard.ZstdCompressor(level=1).compress(b"a" * (65 * 1024 * 1024))  # about 2 KB
    assert len(bomb) < 64 * 1024
    with pytest.raises(BadExport, match="a line longer than") as caught:
        async for _ in lines(_chunks(bomb)):
            pass
    assert caught.value.line == 1
    plain = b"".join(b'{"n": %d}\n' % n for n in range(5000))
    assert [line async for line in lines(_chunks(zstandard.ZstdCompressor().compress(plain)))] == \
        plain.splitlines()


async def test_copy_verification_finds_a_differing_record_and_a_differing_page(two: tuple[Service, Service]) -> None:
    from cxdb.portable import verify

    source, target = two
    chat = await source.store.create_context(0, "runs/chat")
    await source.store.append(chat.context_id, "cxdb.chat.Message", 1, msgpack.packb({1: 2, 2: "hi"}))
    other = await source.store.create_context(0, "runs/other")
    await source.store.append(other.context_id, "demo.Note", 1, msgpack.packb({"n": 1}))
    await target.portability.import_chunks(_chunks(await _export(source)))
    assert (await verify(source, target, full=True))["ok"]
    bundle = orjson.loads((BUNDLES / "conversation-v1.json").read_bytes())
    await target.publish_bundle(bundle["bundle_id"], bundle)  # the target's registry (in every page) differs
    report = await verify(source, target, full=True)
    assert {"problem": "page_differs", "context_id": str(chat.context_id)} in report["problems"]
    assert not report["ok"] and {p["problem"] for p in report["problems"]} == {"page_differs"}
    await target.store.append(other.context_id, "demo.Note", 1, msgpack.packb({"n": 2}))
    report = await verify(source, target, full=True)
    assert {"problem": "context_differs", "context_id": str(other.context_id)} in report["problems"]
