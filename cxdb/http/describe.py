"""The API describing itself: ``/openapi.json``, Swagger UI at ``/docs``, and ``/llms.txt``.

Swagger UI's files come from npm's ``swagger-ui-dist`` and ship inside the package
(``cxdb/static/swagger-ui``; docs/operations.md says which version and how to update it), so the
page works offline: every request it makes goes to this server. (Its online validator badge, which
would send the document to swagger.io, is turned off.)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
from aiohttp import web

from ..errors import NotFound
from .openapi import build_spec

__all__ = ["SPEC", "routes"]

routes = web.RouteTableDef()
SPEC: web.AppKey[bytes] = web.AppKey("openapi", bytes)
ASSETS = Path(str(resources.files("cxdb"))) / "static" / "swagger-ui"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".txt": "text/plain"}
_CACHE = "public, max-age=86400"

DOCS_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>cxdb API</title>
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                                 validatorUrl: null});
  </script>
</body>
</html>
"""

LLMS_TXT = """# cxdb

> An AI context store. Agents append conversation turns over HTTP; readers page through them as JSON.

- A **context** is a conversation: a pointer to its newest turn (its head). Ids are u64 decimal strings.
- A **turn** is one immutable message: a type (`type_id`, `type_version`), a JSON object `data`, and a
  parent turn. Turns form a tree; a context's history is the chain from its head back to the root.
- A **fork** is a new context whose head is an existing turn: it shares all history up to that turn.

The five calls an agent needs (base URL http://127.0.0.1:9010):

    # 1. create a context
    curl -s -X POST http://127.0.0.1:9010/v1/contexts/create -d '{}'
    # 2. append a turn (idempotency_key makes a retry safe)
    curl -s -X POST http://127.0.0.1:9010/v1/contexts/1/append \\
      -d '{"type_id": "cxdb.chat.Message", "type_version": 1, "idempotency_key": "step-1",
           "data": {"role": "user", "text": "Hi"}}'
    # 3. read the newest turns, oldest first; pass next_before_turn_id as before_turn_id for older ones
    curl -s "http://127.0.0.1:9010/v1/contexts/1/turns?limit=20"
    # 4. fork at a turn
    curl -s -X POST http://127.0.0.1:9010/v1/contexts/fork -d '{"base_turn_id": "1"}'
    # 5. find contexts, newest activity first, optionally by tag
    curl -s "http://127.0.0.1:9010/v1/contexts?limit=10&tag=my-agent"

Agents that speak MCP connect to /mcp (Streamable HTTP): tools to list, read, create, fork and append,
and each context as a resource cxdb://contexts/{id} to subscribe to.

To wait for another agent's turn instead of polling, stream GET /v1/contexts/1/follow (Server-Sent
Events, or a WebSocket): one event per new turn, rendered as in /turns, resumable with Last-Event-ID.
GET /v1/events streams every change of the store the same way.

To forget a conversation: DELETE /v1/contexts/1 (?recursive=true for its forks too); forks keep what
they share, and the rest is reclaimed in the background.

To hand a whole conversation to another cxdb (cxdb:admin): GET /v1/contexts/1/export gives it as
JSON Lines, and POST /v1/import on the other server takes it in (importing it twice adds nothing).

Errors are always {"error": {"code", "message", "details"}} with an HTTP status.
A server others can reach asks for a bearer token (Authorization: Bearer cxdb_...) on every route
but /health, /openapi.json, /docs and /llms.txt: 401 without one, 403 when its scope is too narrow.
The full contract: /openapi.json (OpenAPI 3.1), browsable at /docs.
"""


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC], content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    return web.Response(body=DOCS_PAGE, content_type="text/html")


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    path = ASSETS / name
    if name.startswith(".") or "/" in name or not path.is_file():
        raise NotFound("No such asset", {"asset": name})
    kind = _TYPES.get(path.suffix, "text/plain" if path.suffix == "" else "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": _CACHE})


@routes.get("/llms.txt")
async def llms_txt(request: web.Request) -> web.Response:
    return web.Response(text=LLMS_TXT, content_type="text/plain")


def spec_bytes() -> bytes:
    """The OpenAPI document, serialized once per app."""
    return orjson.dumps(build_spec())
