"""The conversation viewer: static files under ``/ui/`` (plain ES modules, no build step), and ``GET /``.

The viewer uses only the public API, from the page's own origin: a Content-Security-Policy allows
scripts, styles and requests to this server only, and no inline script, so nothing a payload holds
can run (payloads are put in the page as text anyway). Its files hold no data, so they are open
routes; the API calls it makes need a token when the server wants one. ``GET /`` sends a browser
to ``/ui/`` and anything else to a small JSON index.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from ..errors import NotFound
from .keys import json_response

__all__ = ["routes"]

routes = web.RouteTableDef()
ASSETS = Path(str(resources.files("cxdb"))) / "static" / "ui"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(status=302, headers={"Location": "ui/"})
    return json_response({"name": "cxdb", "viewer": "/ui/", "openapi": "/openapi.json", "docs": "/docs"})


@routes.get("/ui")
async def viewer_redirect(request: web.Request) -> web.StreamResponse:
    return web.Response(status=301, headers={"Location": "ui/"})  # relative: right behind a path-prefix proxy


@routes.get("/ui/")
async def viewer(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(ASSETS / "index.html", headers={**_HEADERS, "Content-Type": "text/html"})


@routes.get("/ui/{asset}")
async def viewer_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    path = ASSETS / name
    if name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
        raise NotFound("No such file", {"asset": name})
    return web.FileResponse(path, headers={**_HEADERS, "Content-Type": _TYPES[path.suffix]})
