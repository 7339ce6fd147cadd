"""Handlers for blobs, health and stats."""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from .keys import SERVICE, json_response

__all__ = ["routes"]

routes = web.RouteTableDef()
_HEX = frozenset("0123456789abcdefABCDEF")


@routes.get("/v1/blobs/{content_hash}")
async def get_blob(request: web.Request) -> web.Response:
    text = request.match_info["content_hash"]
    if len(text) != 64 or not _HEX.issuperset(text):
        raise BadRequest("content_hash must be 64 hex characters", {"parameter": "content_hash", "value": text})
    body = request.app[SERVICE].get_blob(bytes.fromhex(text))
    return web.Response(body=body, content_type="application/octet-stream",
                        headers={"Cache-Control": "public, max-age=31536000, immutable",
                                 "ETag": f'"{text.lower()}"'})


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].health())


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].health())


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].stats())
