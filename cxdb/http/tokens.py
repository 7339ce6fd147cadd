"""``/v1/tokens``: listing, creating and revoking access tokens (``cxdb:admin``); ``/v1/whoami``: what
the caller's token may do (a viewer hides what it may not)."""

from __future__ import annotations

from aiohttp import web

from ..errors import Unprocessable
from ..model import ADMIN
from ..service.tokens import parse_duration
from .access import GRANT, audit
from .keys import SERVICE, json_response
from .params import optional_str, read_object

__all__ = ["routes"]

routes = web.RouteTableDef()


def _actor(request: web.Request) -> str | None:
    grant = request.get(GRANT)
    return grant.token_id if grant is not None else None


@routes.get("/v1/whoami")
async def whoami(request: web.Request) -> web.Response:
    grant = request.get(GRANT)
    if grant is None:  # access control is off: anyone may do anything
        return json_response({"auth": "off", "token_id": None, "scope": ADMIN, "namespace": None})
    return json_response({"auth": "tokens", "token_id": grant.token_id, "scope": grant.scope,
                          "namespace": grant.namespace})


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    tokens = request.app[SERVICE].tokens
    now = tokens.now_ms()
    return json_response({"tokens": [record.view(now) for record in await tokens.list()]})


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    body = await read_object(request)
    scope = body.get("scope")
    if not isinstance(scope, str):
        raise Unprocessable("scope must be cxdb:read, cxdb:write or cxdb:admin", {"field": "scope"})
    expires = body.get("expires_in")
    tokens = request.app[SERVICE].tokens
    text, record = await tokens.create(
        scope, namespace=optional_str(body, "namespace", 400), name=optional_str(body, "name", 800),
        expires_in=parse_duration(expires, "expires_in") if expires is not None else None)
    audit("token_created", request, "/v1/tokens", 201, _actor(request), subject=record.token_id, scope=record.scope)
    return json_response({"token": text, **record.view(tokens.now_ms())}, status=201,
                         headers={"Cache-Control": "no-store"})


@routes.delete("/v1/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].tokens.revoke(request.match_info["token_id"])
    audit("token_revoked", request, "/v1/tokens/{token_id}", 204, _actor(request), subject=record.token_id)
    return web.Response(status=204)
