"""``--auth tokens``: who may call which route.

:data:`ROUTES` is the one table of what each route needs: nothing (the open routes), or a scope,
and whether it shows the whole store (then a token with a namespace may not call it: ``/v1/stats``,
``/metrics`` and blobs, which no namespace can be cut out of). A route missing from the table needs
``cxdb:admin``, and the route-enumeration test fails until it is added. ``HEAD`` is ``GET``.

The front middleware asks :meth:`Access.check` before anything else but a CORS preflight: no
``Authorization: Bearer`` or an invalid token is 401 with ``WWW-Authenticate: Bearer``; a token
without the scope is 403 naming the scope. Both are audit lines (``cxdb.audit``), with the token
id (never the token), the route, the status and the client's address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from ..errors import CxdbError, Forbidden, Unauthorized
from ..service.tokens import ADMIN, READ, WRITE, Grant, allows
from .keys import SERVICE

__all__ = ["AUDIT", "GRANT", "ROUTES", "Access", "Rule", "audit", "challenge", "namespace", "rule_for"]

AUDIT = logging.getLogger("cxdb.audit")
GRANT: web.RequestKey[Grant | None] = web.RequestKey("grant", object)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Rule:
    scope: str | None
    """The scope a route needs; None for an open route."""
    whole_store: bool = False
    """It shows the whole store: a token with a namespace may not call it."""


OPEN = Rule(None)
_READ, _WRITE, _ADMIN = Rule(READ), Rule(WRITE), Rule(ADMIN)
_STORE = Rule(READ, whole_store=True)
_CONTEXT = "/v1/contexts/{context_id}"

ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/{asset}"): OPEN,
    ("GET", "/llms.txt"): OPEN,
    ("GET", "/"): OPEN,
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/{asset}"): OPEN,
    ("GET", "/v1/whoami"): _READ,
    ("POST", "/mcp"): _READ,  # each tool needs the scope of the route it wraps (cxdb.http.mcp_tools)
    ("GET", "/mcp"): _READ,
    ("DELETE", "/mcp"): _READ,
    ("GET", "/metrics"): _STORE,
    ("GET", "/v1/stats"): _STORE,
    ("GET", "/v1/blobs/{content_hash}"): _STORE,
    ("GET", "/v1/contexts"): _READ,
    ("GET", _CONTEXT): _READ,
    ("GET", f"{_CONTEXT}/children"): _READ,
    ("GET", f"{_CONTEXT}/heads"): _READ,
    ("GET", f"{_CONTEXT}/provenance"): _READ,
    ("GET", f"{_CONTEXT}/turns"): _READ,
    ("GET", f"{_CONTEXT}/follow"): _READ,
    ("GET", "/v1/events"): _READ,
    ("GET", "/v1/registry/bundles"): _READ,
    ("GET", "/v1/registry/bundles/{bundle_id}"): _READ,
    ("GET", "/v1/registry/types"): _READ,
    ("GET", "/v1/registry/types/{type_id}/versions/{type_version}"): _READ,
    ("POST", "/v1/contexts"): _WRITE,
    ("POST", "/v1/contexts/create"): _WRITE,
    ("POST", "/v1/contexts/fork"): _WRITE,
    ("POST", f"{_CONTEXT}/append"): _WRITE,
    ("POST", f"{_CONTEXT}/turns"): _WRITE,
    ("POST", f"{_CONTEXT}/append-batch"): _WRITE,
    ("DELETE", _CONTEXT): _WRITE,
    ("PUT", "/v1/registry/bundles/{bundle_id}"): _ADMIN,
    ("GET", "/v1/tokens"): _ADMIN,
    ("POST", "/v1/tokens"): _ADMIN,
    ("DELETE", "/v1/tokens/{token_id}"): _ADMIN,
    ("GET", f"{_CONTEXT}/export"): _ADMIN,
    ("POST", "/v1/import"): _ADMIN,
}
UNKNOWN = _READ
"""What a request that matched no route needs: a stranger learns nothing, not even which paths exist."""


def rule_for(method: str, route: str | None) -> Rule:
    if route is None:
        return UNKNOWN
    return ROUTES.get(("GET" if method == "HEAD" else method, route), _ADMIN)


def namespace(request: web.Request) -> str | None:
    """The namespace of the request's token; None without one (or without access control)."""
    grant = request.get(GRANT)
    return grant.namespace if grant is not None else None


class Access:
    """Checks bearer tokens against the route table."""

    async def check(self, request: web.Request, route: str | None) -> Grant | None:
        """The request's grant (None for an open route); Unauthorized or Forbidden otherwise. A valid
        token's grant is on the request even when it is refused, so its bucket and log lines name it."""
        rule = rule_for(request.method, route)
        if rule.scope is None:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, text = header.strip().partition(" ")
        if not header:
            raise Unauthorized("this route needs a token: Authorization: Bearer <token>", {"reason": "missing_token"})
        tokens = request.app[SERVICE].tokens
        grant = await tokens.verify(text.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            raise Unauthorized("the token is not valid: unknown, revoked or expired", {"reason": "invalid_token"})
        request[GRANT] = grant
        if not allows(grant.scope, rule.scope):
            raise Forbidden(f"this route needs the scope {rule.scope}", {"required_scope": rule.scope})
        if rule.whole_store and grant.namespace is not None:
            raise Forbidden("this route shows the whole store: it needs a token without a namespace",
                            {"required_scope": ADMIN, "namespace": grant.namespace})
        return grant


def challenge(exc: CxdbError) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750)."""
    if exc.details.get("reason") == "invalid_token":
        return {"WWW-Authenticate": 'Bearer realm="cxdb", error="invalid_token"'}
    return {"WWW-Authenticate": 'Bearer realm="cxdb"'}


def audit(what: str, request: web.Request, route: str, status: int, token_id: str | None, **extra: str) -> None:
    """One structured ``cxdb.audit`` line."""
    AUDIT.warning("%s %s %s %d token=%s %s%s", what, request.method, route, status, token_id or "-",
                  request.remote, "".join(f" {k}={v}" for k, v in extra.items()),
                  extra={"event": what, "method": request.method, "route": route, "status": status,
                         "token_id": token_id, "remote": request.remote, **extra})
