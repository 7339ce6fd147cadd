"""cxdb.Client and cxdb.AsyncClient against a live ``cxdb serve``."""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import sys
import threading
from typing import Any

import msgpack
import pytest

import cxdb
from cxdb import AsyncClient, Client
from tests.conftest import BUNDLES, LiveServer

MESSAGE = {"type_id": "cxdb.chat.Message", "type_version": 1}


def test_contract_snippet_runs_verbatim(live_server: LiveServer) -> None:
    client = Client(live_server.url)
    ctx = client.create_context()
    turn = client.append_turn(ctx.context_id, {
        "type_id": "com.example.Message",
        "type_version": 1,
        "data": {
            "role": "user",
            "text": "Hello!"
        }
    })
    turns = client.get_turns(ctx.context_id, limit=10)
    assert turn.depth == 1 and turns.turns[0].data == {"role": "user", "text": "Hello!"}
    client.close()


def test_every_method(live_server: LiveServer) -> None:
    with Client(live_server.url, timeout=10, headers={"X-Trace": "t1"}) as client:
        assert client.health().status == "ok"
        published = client.publish_bundle(BUNDLES / "conversation-v1.json")
        assert published.created and published.status == 201 and published.etag
        assert not client.publish_bundle(BUNDLES / "conversation-v1.json").created
        v2 = __import__("json").loads((BUNDLES / "conversation-v2.json").read_text())
        assert client.publish_bundle(v2).created
        assert client.get_bundle("conversation-v2").bundle_id == "conversation-v2"
        assert [b.bundle_id for b in client.list_bundles().bundles] == ["conversation-v1", "conversation-v2"]
        assert client.get_type_version("cxdb.chat.Message", 2).fields["6"].name == "tokens"
        assert {t.type_id for t in client.list_types().types} == {"cxdb.chat.Message", "cxdb.chat.ToolCall"}
        ctx = client.create_context(client_tag="cli", provenance={"by": "test"})
        first = client.append_turn(ctx.context_id, type_id="cxdb.chat.Message", type_version=1,
                                   data={"role": "user", "text": "hi"}, idempotency_key="k")
        assert client.append_turn(ctx.context_id, {**MESSAGE, "data": {"role": "user", "text": "hi"}},
                                  idempotency_key="k").turn_id == first.turn_id
        fork = client.fork_context(first.turn_id, client_tag="cli")
        assert fork.lineage.parent_context_id == ctx.context_id
        second = client.append_turn(fork.context_id, MESSAGE, data={"role": "assistant", "text": "yo"},
                                    parent_turn_id=first.turn_id)
        assert second.depth == 2
        typed = client.get_turns(fork.context_id, enum_render="number", view="both", include_unknown=True)
        assert typed.turns[1].data.role == 3 and typed.turns[1].bytes_b64
        assert client.get_context(ctx.context_id, include_lineage=True).lineage.children == [fork.context_id]
        assert client.children(ctx.context_id, recursive=True).total == 1
        assert client.list_contexts(tag="cli", include_provenance=True).total == 2
        blob = client.get_blob(first.content_hash)
        assert msgpack.unpackb(blob, strict_map_key=False) == {1: 2, 2: "hi"}
        stats = client.stats()
        assert stats.turns == 2 and stats.contexts == 2


@pytest.mark.parametrize("call, exception, code, status", [
    (lambda c: c.get_context(999), cxdb.NotFound, "NOT_FOUND", 404),
    (lambda c: c.get_turns(1, limit=-1), cxdb.BadRequest, "BAD_REQUEST", 400),
    (lambda c: c.append_turn(1, MESSAGE, data={"role": "user"}, parent_turn_id=424242), cxdb.Conflict,
     "CONFLICT", 409),
    (lambda c: c.append_turn(1, MESSAGE, data={"role": "nobody"}), cxdb.Unprocessable, "UNPROCESSABLE_ENTITY",
     422),
    (lambda c: c.get_turns(1, type_hint_mode="explicit", as_type_id="x.Y", as_type_version=1),
     cxdb.FailedDependency, "FAILED_DEPENDENCY", 424),
    (lambda c: c.get_type_version("x.Y", 1), cxdb.NotFound, "NOT_FOUND", 404),
])
def test_typed_exceptions(live_server: LiveServer, call: Any, exception: type[cxdb.CxdbError], code: str,
                          status: int) -> None:
    with Client(live_server.url) as client:
        client.publish_bundle(BUNDLES / "conversation-v1.json")
        client.create_context()
        with pytest.raises(exception) as caught:
            call(client)
        error = caught.value
        assert (error.code, error.status) == (code, status)
        assert error.message and isinstance(error.details, dict)
        assert client.health().status == "ok"


def test_precondition_failed_is_typed(store_url: str) -> None:
    server = LiveServer(store_url, "--require-registry")
    try:
        with Client(server.url) as client:
            client.create_context()
            with pytest.raises(cxdb.PreconditionFailed) as caught:
                client.append_turn(1, {"type_id": "nope", "type_version": 1, "data": {}})
            assert caught.value.status == 412
    finally:
        server.stop()


def test_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", timeout=2) as client, pytest.raises(cxdb.TransportError):
        client.health()
    with pytest.raises(ValueError):
        Client("ftp://example")


def test_iter_turns_pages_to_the_root(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        ctx = client.create_context()
        ids = []
        for i in range(1000):
            ids.append(client.append_turn(ctx.context_id, {"type_id": "n", "type_version": 1,
                                                           "data": {"i": i}}).turn_id)
        seen = list(client.iter_turns(ctx.context_id, page_size=97))
        assert [t.turn_id for t in seen] == ids[::-1]
        assert [t.data.i for t in seen[:3]] == [999, 998, 997]


def test_restart_keeps_data_and_client_reconnects(store_url: str) -> None:
    first = LiveServer(store_url)
    client = Client(first.url)
    ctx = client.create_context()
    kept = client.append_turn(ctx.context_id, {"type_id": "n", "type_version": 1, "data": {"before": True}})
    assert first.stop() == 0
    port = first.url.rsplit(":", 1)[1]
    second = LiveServer(store_url, "--port", port)
    try:
        turns = client.get_turns(ctx.context_id).turns
        assert [t.turn_id for t in turns] == [kept.turn_id] and turns[0].data == {"before": True}
        later = client.append_turn(ctx.context_id, {"type_id": "n", "type_version": 1, "data": {"after": True}})
        assert int(later.turn_id) == int(kept.turn_id) + 1
        assert client.create_context().context_id == "2"
    finally:
        client.close()
        second.stop()


async def test_async_client(live_server: LiveServer) -> None:
    async with AsyncClient(live_server.url) as client:
        assert (await client.health()).status == "ok"
        ctx = await client.create_context()
        for i in range(130):
            await client.append_turn(ctx.context_id, {"type_id": "n", "type_version": 1, "data": {"i": i}})
        seen = [turn.data.i async for turn in client.iter_turns(ctx.context_id, page_size=50)]
        assert seen == list(range(129, -1, -1))
        with pytest.raises(cxdb.NotFound) as caught:
            await client.get_context(5555)
        assert caught.value.status == 404
        assert (await client.publish_bundle(BUNDLES / "logs-v1.json")).created


def test_client_never_imports_storage() -> None:
    code = ("import sys, cxdb; c = cxdb.Client('http://127.0.0.1:1'); "
            "bad = [m for m in ('lmdb', 'zstandard', 'cxdb.storage', 'cxdb.service') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_http_concurrency_from_threads(live_server: LiveServer) -> None:
    with Client(live_server.url) as setup:
        ctx = setup.create_context()
    errors: list[BaseException] = []

    def producer(k: int) -> None:
        try:
            with Client(live_server.url) as client:
                for i in range(3):
                    client.append_turn(ctx.context_id, {"type_id": "n", "type_version": 1, "data": {"k": k, "i": i}})
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Client(live_server.url) as client:
        turns = client.get_turns(ctx.context_id, limit=100).turns
        assert len(turns) == 48 and [t.depth for t in turns] == list(range(1, 49))
        assert all(b.parent_turn_id == a.turn_id for a, b in zip(turns, turns[1:], strict=False))
        assert len({(t.data.k, t.data.i) for t in turns}) == 48


def test_bundle_published_by_another_process_is_used_on_next_append(live_server: LiveServer) -> None:
    import asyncio
    import json

    from cxdb.config import Settings
    from cxdb.service import Service

    with Client(live_server.url) as client:
        ctx = client.create_context()
        client.append_turn(ctx.context_id, {"type_id": "cxdb.chat.Message", "type_version": 1,
                                            "data": {"role": "user", "text": "before"}}, idempotency_key="k1")
        async def publish() -> bool:
            async with Service(Settings(store=live_server.store)) as other:  # as a second process would
                bundle = json.loads((BUNDLES / "conversation-v1.json").read_text())
                return (await other.publish_bundle("conversation-v1", bundle)).created

        assert asyncio.run(publish())
        after = client.append_turn(ctx.context_id, {"type_id": "cxdb.chat.Message", "type_version": 1,
                                                    "data": {"role": "user", "text": "after"}})
        assert msgpack.unpackb(client.get_blob(after.content_hash), strict_map_key=False) == {1: 2, 2: "after"}
        turns = client.get_turns(ctx.context_id).turns
        assert turns[0].decoded_as is None and turns[1].decoded_as.type_version == 1
        replay = client.append_turn(ctx.context_id, {"type_id": "cxdb.chat.Message", "type_version": 1,
                                                     "data": {"role": "user", "text": "before"}},
                                    idempotency_key="k1")
        assert replay.turn_id == turns[0].turn_id


def test_one_client_shared_by_threads(live_server: LiveServer) -> None:
    """Each thread gets its own connection: every append succeeds once, none is lost or doubled."""
    with cxdb.Client(live_server.url) as client:
        context = client.create_context()

        def work(worker: int) -> list[str]:
            return [client.append_turn(context.context_id, {"type_id": "t", "type_version": 1,
                                                            "data": {"w": worker, "i": i}}).turn_id
                    for i in range(50)]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = [turn_id for batch in pool.map(work, range(8)) for turn_id in batch]
        assert len(set(ids)) == 400
        turns = list(client.iter_turns(context.context_id, page_size=1000))
        assert len(turns) == 400 and {turn.turn_id for turn in turns} == set(ids)


def test_transport_errors_say_whether_the_request_was_sent() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def read_then_hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)  # the whole request arrived, and then the connection is lost
            conn.close()

        thread = threading.Thread(target=read_then_hang_up)
        thread.start()
        with cxdb.Client(f"http://127.0.0.1:{port}", timeout=5) as client:
            with pytest.raises(cxdb.TransportError) as lost:
                client.create_context()
        thread.join()
    assert lost.value.details["request_sent"] is True
    assert "may or may not have been applied" in lost.value.message
    with cxdb.Client(f"http://127.0.0.1:{port}", timeout=2) as client:  # nobody listens now
        with pytest.raises(cxdb.TransportError) as refused:
            client.create_context()
    assert refused.value.details["request_sent"] is False
    assert refused.value.message.startswith("cannot reach")
