"""Export and import over HTTP (``cxdb:admin``): ``GET /v1/contexts/{context_id}/export`` streams one
context in the export format (docs/export-format.md), ``POST /v1/import`` reads one."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..service import Selection
from .keys import SERVICE, json_response
from .params import flag, path_id

__all__ = ["routes"]

routes = web.RouteTableDef()
CHUNK = 256 * 1024


@routes.get("/v1/contexts/{context_id}/export")
async def export_context(request: web.Request) -> web.StreamResponse:
    """The context's group (its chain, replaced heads and keys) after the registry's bundles. A failure
    once the stream has begun ends it without its end record, which an import reports as truncated."""
    context_id = path_id(request, "context_id")
    lines = request.app[SERVICE].portability.export_lines(Selection((context_id,)))
    first = await anext(lines)  # a missing context is refused here, with the error envelope
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "Content-Disposition": f'attachment; filename="context-{context_id}.jsonl"',
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    held = [first]
    size = len(first)
    async for line in lines:
        held.append(line)
        size += len(line)
        if size >= CHUNK:
            await response.write(b"".join(held))
            held, size = [], 0
    await response.write(b"".join(held))
    await response.write_eof()
    return response


@routes.post("/v1/import")
async def import_export(request: web.Request) -> web.Response:
    """Import the body (an export, plain or zstd), streamed: its report, or 422 naming the bad line."""
    preserve = True if flag(request.query, "preserve_ids", False) else None
    report = await request.app[SERVICE].portability.import_json(_chunks(request), preserve)
    return json_response(report)


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
