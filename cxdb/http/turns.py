"""Handlers for turns: paging a context and appending to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..cache import LruCache
from ..errors import BadRequest, Unprocessable
from ..service import HINT_MODES, MAX_STRING_LIMIT, RENDER_CHOICES, VIEWS, RenderOptions, TurnInput, TypeHint
from .access import namespace
from .keys import SERVICE, json_response
from .params import (
    OFFLOAD_BYTES,
    body_bytes,
    body_u64,
    choice,
    flag,
    optional_str,
    path_id,
    query_int,
    query_u64,
    read_object,
)

__all__ = ["MAX_PAGE", "PAGE_QUERIES", "page_query_cache", "render_query", "routes"]

routes = web.RouteTableDef()
MAX_PAGE = 1000
MAX_BATCH = 1000
_U32_MAX = (1 << 32) - 1


def _hint(query: Any) -> TypeHint:
    mode = choice(query, "type_hint_mode", HINT_MODES)
    version_text = query.get("as_type_version")
    version = None
    if version_text is not None:
        if (not version_text.isascii() or not version_text.isdigit() or len(version_text) > 10
                or int(version_text) > _U32_MAX):
            raise BadRequest("as_type_version must be a non-negative integer",
                             {"parameter": "as_type_version", "value": version_text})
        version = int(version_text)
    return TypeHint(mode, query.get("as_type_id") or None, version)


@dataclass(frozen=True, slots=True)
class _PageQuery:
    limit: int
    before_turn_id: int | None
    view: str
    hint: TypeHint
    options: RenderOptions


def render_query(query: Any) -> tuple[str, TypeHint, RenderOptions]:
    """How turns are to be rendered: the view, the type hint and the render options, as a page asks."""
    limit = query.get("string_limit")
    if limit is not None and (not limit.isascii() or not limit.isdigit() or len(limit) > 6
                              or not 1 <= int(limit) <= MAX_STRING_LIMIT):
        raise BadRequest(f"string_limit must be an integer from 1 to {MAX_STRING_LIMIT}",
                         {"parameter": "string_limit", "value": limit})
    options = RenderOptions(**{name: choice(query, name, allowed) for name, allowed in RENDER_CHOICES.items()},
                            include_unknown=flag(query, "include_unknown", False),
                            string_limit=int(limit) if limit is not None else None)
    return choice(query, "view", VIEWS), _hint(query), options


def _parse_page_query(query: Any) -> _PageQuery:
    limit = query_int(query, "limit", 64, MAX_PAGE)
    before = query_u64(query, "before_turn_id")
    return _PageQuery(limit, before, *render_query(query))


# What a query string asks for is a pure function of its text, and clients page with a few
# query strings over and over: each app parses each once. Bad ones raise and are never kept.
PAGE_QUERIES: web.AppKey[LruCache[str, _PageQuery]] = web.AppKey("page_queries")


def page_query_cache() -> LruCache[str, _PageQuery]:
    """A fresh cache for one app: at most 1,024 strings of at most 8 KiB (aiohttp's longest request line)."""
    return LruCache(1024)


@routes.get("/v1/contexts/{context_id}/turns")
async def get_turns(request: web.Request) -> web.Response:
    if "turn_id" in request.query:
        return await _exact_turn(request)
    text = request.query_string
    cache = request.app[PAGE_QUERIES]
    parsed = cache.get(text)
    if parsed is None:
        parsed = _parse_page_query(request.query)
        cache.put(text, parsed)
    body = await request.app[SERVICE].page_json(
        path_id(request, "context_id"), limit=parsed.limit, before_turn_id=parsed.before_turn_id,
        view=parsed.view, hint=parsed.hint, options=parsed.options, namespace=namespace(request))
    return web.Response(body=body, content_type="application/json")


async def _exact_turn(request: web.Request) -> web.Response:
    query = request.query
    if "before_turn_id" in query:
        raise BadRequest("turn_id names one turn: before_turn_id does not go with it", {"parameter": "before_turn_id"})
    turn_id = query_u64(query, "turn_id")
    if turn_id is None:  # given, but empty
        raise BadRequest("turn_id must be a turn id", {"parameter": "turn_id", "value": query["turn_id"]})
    body = await request.app[SERVICE].turn_json(path_id(request, "context_id"), turn_id, *render_query(query),
                                                namespace=namespace(request))
    return web.Response(body=body, content_type="application/json")


def _type_version(body: dict[str, Any]) -> int:
    value = body.get("type_version")
    if type(value) is int and 0 <= value <= _U32_MAX:  # nearly always
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    elif isinstance(value, float) and value.is_integer() and 0 <= value <= _U32_MAX:  # 227.0, as JSON Schema
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32_MAX:
        raise Unprocessable("type_version must be a non-negative integer", {"field": "type_version"})
    return value


def _turn_input(body: dict[str, Any]) -> TurnInput:
    type_id = body.get("type_id")
    if not isinstance(type_id, str) or not type_id or len(type_id.encode()) > 400:
        raise Unprocessable("type_id must be a non-empty string", {"field": "type_id"})
    field = "data" if "data" in body else "payload"
    data = body.get(field)
    if not isinstance(data, dict):
        raise Unprocessable(f"{field} must be a JSON object", {"field": field})
    key = optional_str(body, "idempotency_key", max_bytes=400)
    if key == "":
        raise Unprocessable("idempotency_key must not be empty", {"field": "idempotency_key"})
    return TurnInput(type_id, _type_version(body), data, key)


async def _append(request: web.Request) -> web.Response:
    context_id = path_id(request, "context_id")
    body = await read_object(request)
    item = _turn_input(body)
    result, replayed = await request.app[SERVICE].append(
        context_id, item.type_id, item.type_version, item.data, parent_turn_id=body_u64(body, "parent_turn_id"),
        idempotency_key=item.idempotency_key, large=body_bytes(request) > OFFLOAD_BYTES,
        expected_head_turn_id=body_u64(body, "expected_head_turn_id"), namespace=namespace(request))
    # No Location: a turn has no URL of its own; it is read through its context's pages.
    if replayed:
        return json_response(result, headers={"Idempotent-Replayed": "true"})
    return json_response(result, status=201)


@routes.post("/v1/contexts/{context_id}/append")
async def append(request: web.Request) -> web.Response:
    return await _append(request)


@routes.post("/v1/contexts/{context_id}/turns")
async def append_alias(request: web.Request) -> web.Response:
    return await _append(request)


@routes.post("/v1/contexts/{context_id}/append-batch")
async def append_batch(request: web.Request) -> web.Response:
    context_id = path_id(request, "context_id")
    body = await read_object(request)
    listed = body.get("turns")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_BATCH:
        raise Unprocessable(f"turns must be a list of 1 to {MAX_BATCH} turns", {"field": "turns"})
    items: list[TurnInput] = []
    keys: set[str] = set()
    for index, entry in enumerate(listed):
        if not isinstance(entry, dict):
            raise Unprocessable("each turn must be a JSON object", {"index": index, "field": f"turns[{index}]"})
        try:
            item = _turn_input(entry)
        except Unprocessable as exc:
            raise Unprocessable(exc.message, {"index": index, **exc.details}) from exc
        if item.idempotency_key is not None:
            if item.idempotency_key in keys:
                raise Unprocessable("an idempotency key appears twice in the batch",
                                    {"index": index, "field": "idempotency_key"})
            keys.add(item.idempotency_key)
        items.append(item)
    result, replayed = await request.app[SERVICE].append_batch(
        context_id, items, parent_turn_id=body_u64(body, "parent_turn_id"),
        expected_head_turn_id=body_u64(body, "expected_head_turn_id"), large=body_bytes(request) > OFFLOAD_BYTES,
        namespace=namespace(request))
    if replayed:
        return json_response(result, headers={"Idempotent-Replayed": "true"})
    return json_response(result, status=201)
