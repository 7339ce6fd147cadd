"""Handlers for /v1/contexts routes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import BadRequest, Unprocessable
from ..service.views import parse_list_cursor
from .access import namespace
from .keys import SERVICE, json_response
from .params import body_u64, flag, optional_str, path_id, query_int, query_u64, read_object

__all__ = ["routes"]

routes = web.RouteTableDef()
# "create" and "fork" are POST-only routes of their own, not ids: GET on them answers 405, not a bad id.
_ID = "{context_id:(?!create$|fork$)[^{}/]+}"
MAX_LIST = 10_000
MAX_TAG_BYTES = 400


def _blocks(query: Any, default: bool) -> dict[str, bool]:
    """The include_provenance and include_lineage flags, both defaulting to ``default``."""
    return {name: flag(query, name, default) for name in ("include_provenance", "include_lineage")}


@routes.get("/v1/contexts")
async def list_contexts(request: web.Request) -> web.Response:
    query = request.query
    return json_response(await request.app[SERVICE].list_contexts(
        limit=query_int(query, "limit", 100, MAX_LIST), tag=query.get("tag"), tag_prefix=_prefix(query),
        before=_cursor(query), **_blocks(query, False), namespace=namespace(request)))


def _cursor(query: Any) -> tuple[int, int] | None:
    text = query.get("before")
    if text is None:
        return None
    cursor = parse_list_cursor(text)
    if cursor is None:
        raise BadRequest("before must be the next_before of an earlier page", {"parameter": "before", "value": text})
    return cursor


def _prefix(query: Any) -> str | None:
    prefix = query.get("tag_prefix") or None
    if prefix is not None and len(prefix.encode()) > MAX_TAG_BYTES:
        raise BadRequest(f"tag_prefix is at most {MAX_TAG_BYTES} bytes", {"parameter": "tag_prefix"})
    return prefix


@routes.get(f"/v1/contexts/{_ID}")
async def get_context(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].get_context(
        path_id(request, "context_id"), **_blocks(request.query, True), namespace=namespace(request)))


@routes.delete(f"/v1/contexts/{_ID}")
async def delete_context(request: web.Request) -> web.Response:
    """204; the context is gone from every read at once, its data reclaimed in the background."""
    await request.app[SERVICE].lifecycle.delete_context(
        path_id(request, "context_id"), recursive=flag(request.query, "recursive", False),
        namespace=namespace(request))
    return web.Response(status=204)


@routes.get("/v1/contexts/{context_id}/children")
async def children(request: web.Request) -> web.Response:
    query = request.query
    return json_response(await request.app[SERVICE].children(
        path_id(request, "context_id"), recursive=flag(query, "recursive", False),
        limit=query_int(query, "limit", 256, MAX_LIST), **_blocks(query, True), namespace=namespace(request)))


@routes.get("/v1/contexts/{context_id}/heads")
async def heads(request: web.Request) -> web.Response:
    query = request.query
    return json_response(await request.app[SERVICE].head_history(
        path_id(request, "context_id"), limit=query_int(query, "limit", 64, MAX_LIST),
        before=query_u64(query, "before"), namespace=namespace(request)))


@routes.get("/v1/contexts/{context_id}/provenance")
async def provenance(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].provenance(path_id(request, "context_id"),
                                                               namespace=namespace(request)))


async def _create(request: web.Request, require_base: bool) -> web.Response:
    body = await read_object(request, allow_empty=not require_base)
    base_turn_id = body_u64(body, "base_turn_id", 0) or 0
    if require_base and not base_turn_id:
        raise Unprocessable("a fork needs base_turn_id, an existing turn", {"field": "base_turn_id"})
    provenance: Any = body.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise Unprocessable("provenance must be a JSON object", {"field": "provenance"})
    result = await request.app[SERVICE].create_context(
        base_turn_id=base_turn_id, client_tag=optional_str(body, "client_tag", MAX_TAG_BYTES),
        provenance=provenance, namespace=namespace(request))
    return json_response(result, status=201, headers={"Location": f"/v1/contexts/{result['context_id']}"})


@routes.post("/v1/contexts/create")
async def create_context(request: web.Request) -> web.Response:
    return await _create(request, require_base=False)


@routes.post("/v1/contexts")
async def create_context_alias(request: web.Request) -> web.Response:
    return await _create(request, require_base=False)


@routes.post("/v1/contexts/fork")
async def fork_context(request: web.Request) -> web.Response:
    return await _create(request, require_base=True)
