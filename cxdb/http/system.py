"""Handlers for blobs, health, stats and metrics."""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest, NotFound
from ..metrics import CONTENT_TYPE
from .keys import SERVICE, json_response

__all__ = ["routes"]

routes = web.RouteTableDef()
_HEX = frozenset("0123456789abcdefABCDEF")


@routes.get("/v1/blobs/{content_hash}")
async def get_blob(request: web.Request) -> web.Response:
    text = request.match_info["content_hash"]
    if len(text) != 64 or not _HEX.issuperset(text):
        raise BadRequest("content_hash must be 64 hex characters", {"parameter": "content_hash", "value": text})
    body = await request.app[SERVICE].get_blob(bytes.fromhex(text))
    return web.Response(body=body, content_type="application/octet-stream",
                        headers={"Cache-Control": "public, max-age=31536000, immutable",
                                 "ETag": f'"{text.lower()}"'})


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].health())


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICE].health())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    text = await request.app[SERVICE].metrics_text()
    if text is None:
        raise NotFound("Metrics are off (--metrics off)", {})
    response = web.Response(body=text)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    return json_response(await request.app[SERVICE].stats())
