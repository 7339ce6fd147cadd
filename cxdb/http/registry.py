"""Handlers for the type registry."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from ..errors import BadRequest, Unprocessable
from .keys import SERVICE, json_response
from .params import read_json

__all__ = ["routes"]

routes = web.RouteTableDef()
CACHE_CONTROL = "public, max-age=31536000, immutable"


@routes.put(r"/v1/registry/bundles/{bundle_id:[\s\S]+}")
async def publish_bundle(request: web.Request) -> web.Response:
    bundle_id = request.match_info["bundle_id"]
    value = await read_json(request, malformed=Unprocessable)
    published = await request.app[SERVICE].publish_bundle(bundle_id, value)
    if not published.created:
        return web.Response(status=204, headers={"ETag": published.etag})
    location = f"/v1/registry/bundles/{quote(bundle_id, safe='')}"
    return json_response({"bundle_id": bundle_id, "created": True}, status=201,
                         headers={"ETag": published.etag, "Location": location})


def _matches(header: str, etag: str) -> bool:
    tags = [part.strip() for part in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


@routes.get(r"/v1/registry/bundles/{bundle_id:[\s\S]+}")
async def get_bundle(request: web.Request) -> web.Response:
    bundle = await request.app[SERVICE].get_bundle(request.match_info["bundle_id"])
    headers = {"ETag": bundle.etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request.headers.get("If-None-Match", ""), bundle.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=bundle.body, content_type="application/json", headers=headers)


@routes.get("/v1/registry/bundles")
async def list_bundles(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].list_bundles())


@routes.get("/v1/registry/types/{type_id}/versions/{type_version}")
async def get_type_version(request: web.Request) -> web.Response:
    text = request.match_info["type_version"]
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise BadRequest("type_version must be a non-negative integer", {"parameter": "type_version", "value": text})
    return json_response(await request.app[SERVICE].get_type_version(request.match_info["type_id"], int(text)))


@routes.get("/v1/registry/types")
async def list_types(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].list_types())
