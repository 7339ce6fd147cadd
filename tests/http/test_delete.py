"""DELETE /v1/contexts/{id} over HTTP, on each backend: the context is gone from every route at once,
forks keep their history, /v1/stats shows what awaits reclamation, reclamation frees it, the event
stream says so; and the scopes and namespaces that guard it."""

from __future__ import annotations

from typing import Any

import orjson

from cxdb.http.keys import SERVICE

MESSAGE = {"type_id": "t", "type_version": 1}


async def make(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status == 201, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def appended(client: Any, context_id: str, n: int, start: int = 0) -> list[str]:
    return [(await make(client, f"/v1/contexts/{context_id}/append", {**MESSAGE, "data": {"n": start + i}}))["turn_id"]
            for i in range(n)]


async def stats(client: Any) -> dict[str, Any]:
    return await (await client.get("/v1/stats")).json()  # type: ignore[no-any-return]


async def test_a_deleted_context_answers_404_everywhere_and_its_fork_pages_as_before(make_client: Any) -> None:
    client = await make_client(gc=False)
    doomed = await make(client, "/v1/contexts/create", {"client_tag": "runs/a"})
    cid = doomed["context_id"]
    turns = await appended(client, cid, 4)
    fork = await make(client, "/v1/contexts/fork", {"base_turn_id": turns[1], "client_tag": "runs/b"})
    await appended(client, fork["context_id"], 2, start=10)
    page = await (await client.get(f"/v1/contexts/{fork['context_id']}/turns")).json()
    assert (await client.delete(f"/v1/contexts/{cid}")).status == 204
    for path in ("", "/turns", "/children", "/heads", "/provenance", "/export", f"/turns?turn_id={turns[0]}"):
        response = await client.get(f"/v1/contexts/{cid}{path}")
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
    assert (await client.post(f"/v1/contexts/{cid}/append", json={**MESSAGE, "data": {}})).status == 404
    assert (await client.delete(f"/v1/contexts/{cid}")).status == 404
    listed = await (await client.get("/v1/contexts?tag_prefix=runs/")).json()
    assert [c["context_id"] for c in listed["contexts"]] == [fork["context_id"]] and listed["total"] == 1
    assert (await (await client.get("/v1/contexts?tag=runs/a")).json())["total"] == 0
    assert await (await client.get(f"/v1/contexts/{fork['context_id']}/turns")).json() == page
    waiting = (await stats(client))["reclaiming"]
    assert waiting["contexts"] == 1 and waiting["turns"] >= 1
    assert (await stats(client))["contexts"] == 1


async def test_recursive_deletes_the_subtree_and_a_missing_id_is_404(make_client: Any) -> None:
    client = await make_client()
    root = await make(client, "/v1/contexts/create", {})
    base = await appended(client, root["context_id"], 2)
    child = await make(client, "/v1/contexts/fork", {"base_turn_id": base[1]})
    below = await appended(client, child["context_id"], 1)
    grand = await make(client, "/v1/contexts/fork", {"base_turn_id": below[0]})
    assert (await client.delete(f"/v1/contexts/{root['context_id']}?recursive=true")).status == 204
    for context in (root, child, grand):
        assert (await client.get(f"/v1/contexts/{context['context_id']}")).status == 404
    assert (await client.delete("/v1/contexts/999999")).status == 404
    assert (await client.delete("/v1/contexts/nope")).status == 400
    assert (await client.delete(f"/v1/contexts/{root['context_id']}?recursive=maybe")).status in (400, 404)
    # The background reclamation (on by default) frees everything: nothing else holds these turns.
    current = await settled(client)
    assert (current["turns"], current["blobs"], current["blob_stored_bytes"]) == (0, 0, 0)


async def settled(client: Any) -> dict[str, Any]:
    """/v1/stats once the background loop has caught up with the deletions (it runs on its own)."""
    await client.server.app[SERVICE].lifecycle.caught_up()
    current = await stats(client)
    assert current["reclaiming"] == {"contexts": 0, "turns": 0, "blobs": 0, "bytes": 0}, current
    return current


async def test_a_deletion_is_an_event_on_the_stream(make_client: Any) -> None:
    client = await make_client()
    context = await make(client, "/v1/contexts/create", {})
    await client.delete(f"/v1/contexts/{context['context_id']}")
    response = await client.get("/v1/events?after=0&events=context_deleted")
    assert response.status == 200
    seen = b""
    while b"event: context_deleted" not in seen or b"\n\n" not in seen.split(b"event: context_deleted", 1)[1]:
        seen += await response.content.readany()
    block = seen.split(b"event: context_deleted", 1)[1].split(b"\n\n", 1)[0].decode()
    data = [line[len("data: "):] for line in block.splitlines() if line.startswith("data: ")][0]
    assert orjson.loads(data) == {"context_id": context["context_id"], "head_turn_id": "0", "head_depth": 0}
    response.close()


async def test_a_follow_stream_ends_when_its_context_is_deleted(make_client: Any) -> None:
    client = await make_client()
    context = await make(client, "/v1/contexts/create", {})
    await appended(client, context["context_id"], 1)
    stream = await client.get(f"/v1/contexts/{context['context_id']}/follow?after_turn_id=0")
    assert stream.status == 200
    seen = b""
    while b"event: turn" not in seen:
        seen += await stream.content.readany()
    assert (await client.delete(f"/v1/contexts/{context['context_id']}")).status == 204
    while chunk := await stream.content.readany():  # the stream ends, with no turn after the deletion
        assert b"event: turn" not in chunk
    assert (await client.get(f"/v1/contexts/{context['context_id']}/follow")).status == 404


async def test_namespaced_deletion(service: Any) -> None:
    from cxdb.errors import Forbidden, NotFound

    mine = await service.create_context(client_tag="a/root")
    turn, _ = await service.append(int(mine["context_id"]), "t", 1, {"n": 1})
    await service.create_context(base_turn_id=int(turn["turn_id"]), client_tag="b/theirs")  # admin-made fork
    other = await service.create_context(client_tag="b/x")
    for context_id, namespace, refused in ((other["context_id"], "a/", NotFound),
                                           (mine["context_id"], "a/", Forbidden)):
        try:
            await service.lifecycle.delete_context(int(context_id), recursive=True, namespace=namespace)
        except refused:
            continue
        raise AssertionError(f"{context_id} deleted within {namespace}")
    assert await service.lifecycle.delete_context(int(mine["context_id"]), namespace="a/") == [int(mine["context_id"])]
    assert (await service.get_context(int(other["context_id"])))["context_id"] == other["context_id"]
