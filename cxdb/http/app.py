"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..config import Settings
from ..service import Service
from . import contexts, describe, events, follow, mcp, portable, registry, system, tokens, turns, viewer
from .access import Access
from .front import REQUEST_IDS, RequestIds, front_middleware
from .keys import SERVICE, SETTINGS
from .ratelimit import add_rate_headers
from .streams import STREAMS, Streams

__all__ = ["create_app"]


def create_app(settings: Settings, service: Service | None = None) -> web.Application:
    """A fresh application. Without ``service`` it opens one on startup and closes it on cleanup,
    draining the writer so every acknowledged append is on disk.
    """
    access = Access() if settings.auth == "tokens" else None
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[front_middleware(settings, access)])
    app[SETTINGS] = settings
    app[REQUEST_IDS] = RequestIds()
    app[turns.PAGE_QUERIES] = turns.page_query_cache()
    # Registration order is match order among paths that share a prefix: the hot routes first.
    app[describe.SPEC] = describe.spec_bytes()
    for table in (turns.routes, contexts.routes, registry.routes, system.routes, events.routes, follow.routes,
                  tokens.routes, portable.routes, describe.routes, viewer.routes, mcp.routes):
        app.router.add_routes(table)
    streams = app[STREAMS] = Streams()
    app.on_shutdown.append(streams.close_all)
    sessions = app[mcp.MCP_SESSIONS] = mcp.McpSessions()
    app.on_shutdown.append(sessions.close_all)
    if settings.rate_limit is not None:
        app.on_response_prepare.append(add_rate_headers)

    if service is not None:
        app[SERVICE] = service
    else:
        async def lifetime(app: web.Application) -> AsyncIterator[None]:
            opened = Service(settings)
            try:
                await opened.start()
            except BaseException:
                await opened.close()
                raise
            app[SERVICE] = opened
            try:
                yield
            finally:
                await opened.close()

        app.cleanup_ctx.append(lifetime)
    return app
