"""What cxdb offers over MCP: tools (each wrapping one API operation, with the scope of its route),
contexts as resources, and the JSON-RPC methods that list and call them.

Every tool takes a JSON Schema'd object, answers ``structuredContent`` shaped as the HTTP route's
answer (its output schema is the OpenAPI document's), and a text copy of it. A failure of the
operation is a tool error (``isError``) carrying the API's error envelope; a token without the
tool's scope is a JSON-RPC error naming the scope. Tokens with a namespace see their namespace only,
as on every route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from .. import __version__
from ..errors import CxdbError, NotFound, Unprocessable
from ..model import READ, WRITE, allows, parse_u64
from ..service import MAX_STRING_LIMIT, RenderOptions, Service
from ..service.tokens import Grant
from ..service.views import parse_list_cursor
from .openapi import SCHEMAS

__all__ = ["FORBIDDEN_CODE", "RESOURCE_PREFIX", "TOOLS", "McpError", "Tool", "as_mcp_error", "handle", "reply"]

RESOURCE_PREFIX = "cxdb://contexts/"
FORBIDDEN_CODE = -32003
"""The JSON-RPC error of a call the token's scope does not allow (``data.required_scope``)."""
RESOURCE_PAGE = 20
RESOURCE_STRING_LIMIT = 2000
LIST_PAGE = 50
CONVERSATION = "cxdb.chat.Message"
ROLES = {"system": 1, "user": 2, "assistant": 3, "tool": 4}


def as_mcp_error(exc: CxdbError) -> McpError:
    """A JSON-RPC error for a failure outside a tool (a resource, a subscription): never internals."""
    code = -32002 if exc.code == "NOT_FOUND" else -32602 if exc.code in ("UNPROCESSABLE_ENTITY",
                                                                         "BAD_REQUEST") else -32603
    message = exc.message if exc.code != "INTERNAL_ERROR" else "Internal server error"
    return McpError(code, message, {"code": exc.code})


def reply(request_id: Any, result: Any = None, error: McpError | None = None) -> dict[str, Any]:
    """One JSON-RPC response."""
    if error is not None:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        return {"jsonrpc": "2.0", "id": request_id, "error": body}
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


class McpError(Exception):
    """A JSON-RPC error: ``code``, ``message`` and ``data``."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


Call = Callable[[Service, dict[str, Any], str | None], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    scope: str
    input: dict[str, Any]
    output: str
    call: Call


def _output_schema(name: str) -> dict[str, Any]:
    """The OpenAPI component ``name`` with every schema it refers to under ``$defs``, so the client can
    resolve it within the one document."""
    needed: dict[str, Any] = {}

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                target = ref.rsplit("/", 1)[1]
                if target not in needed:
                    needed[target] = SCHEMAS[target]
                    visit(SCHEMAS[target])
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(SCHEMAS[name])
    text = orjson.dumps({**SCHEMAS[name], "$defs": needed}).decode()
    return dict(orjson.loads(text.replace("#/components/schemas/", "#/$defs/")))


ID = {"type": ["string", "integer"], "description": "A u64 id, as a decimal string (or an integer)."}
TAG = {"type": "string", "maxLength": 400}


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _id(args: dict[str, Any], name: str, required: bool = True) -> int | None:
    value = args.get(name)
    if value is None:
        if required:
            raise Unprocessable(f"{name} is required", {"field": name})
        return None
    try:
        return parse_u64(str(value) if isinstance(value, int) and not isinstance(value, bool) else value)
    except (ValueError, TypeError) as exc:
        raise Unprocessable(f"{name} must be a u64 id", {"field": name}) from exc


def _int(args: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Unprocessable(f"{name} must be an integer from {low} to {high}", {"field": name})
    return value


def _str(args: dict[str, Any], name: str, required: bool = False, max_bytes: int = 400) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise Unprocessable(f"{name} is required", {"field": name})
        return None
    if not isinstance(value, str) or len(value.encode()) > max_bytes:
        raise Unprocessable(f"{name} must be a string of at most {max_bytes} bytes", {"field": name})
    return value


def _object(args: dict[str, Any], name: str, required: bool = False) -> dict[str, Any] | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise Unprocessable(f"{name} must be a JSON object", {"field": name})
    return value


async def _list_contexts(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.list_contexts(limit=_int(args, "limit", 20, 0, 1000), tag_prefix=_str(args, "tag_prefix"),
                                       namespace=namespace)


async def _get_context(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.get_context(_id(args, "context_id") or 0, namespace=namespace)


def _options(args: dict[str, Any]) -> RenderOptions:
    limit = args.get("string_limit")
    if limit is not None:
        limit = _int(args, "string_limit", 0, 1, MAX_STRING_LIMIT)
    return RenderOptions(bytes_render="len_only", string_limit=limit)


async def _get_turns(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    view = args.get("view", "typed")
    if view not in ("typed", "raw", "both"):
        raise Unprocessable("view must be typed, raw or both", {"field": "view"})
    return orjson.loads(await service.page_json(
        _id(args, "context_id") or 0, limit=_int(args, "limit", 20, 0, 200),
        before_turn_id=_id(args, "before_turn_id", required=False), view=view, options=_options(args),
        namespace=namespace))


async def _get_turn(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    page = orjson.loads(await service.turn_json(_id(args, "context_id") or 0, _id(args, "turn_id") or 0,
                                                options=RenderOptions(bytes_render="len_only"), namespace=namespace))
    return page


async def _get_provenance(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.provenance(_id(args, "context_id") or 0, namespace=namespace)


async def _create_context(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.create_context(client_tag=_str(args, "client_tag"),
                                        provenance=_object(args, "provenance"), namespace=namespace)


async def _fork_context(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    base = _id(args, "base_turn_id") or 0
    if not base:
        raise Unprocessable("a fork needs base_turn_id, an existing turn", {"field": "base_turn_id"})
    return await service.create_context(base_turn_id=base, client_tag=_str(args, "client_tag"),
                                        provenance=_object(args, "provenance"), namespace=namespace)


async def _append_turn(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    version = _int(args, "type_version", -1, 0, (1 << 32) - 1)
    result, _ = await service.append(
        _id(args, "context_id") or 0, _str(args, "type_id", required=True) or "", version,
        _object(args, "data", required=True) or {}, parent_turn_id=_id(args, "parent_turn_id", required=False),
        idempotency_key=_str(args, "idempotency_key"),
        expected_head_turn_id=_id(args, "expected_head_turn_id", required=False), namespace=namespace)
    return result


async def _append_message(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    role = args.get("role")
    if role not in ROLES:
        raise Unprocessable(f"role must be one of {', '.join(ROLES)}", {"field": "role"})
    text = _str(args, "text", required=True, max_bytes=4 * 1024 * 1024)
    await _ensure_conversation(service)
    message = {"role": role, "text": text, "timestamp": int(time.time() * 1000)}
    result, _ = await service.append(
        _id(args, "context_id") or 0, CONVERSATION, 1, message,
        parent_turn_id=_id(args, "parent_turn_id", required=False), idempotency_key=_str(args, "idempotency_key"),
        expected_head_turn_id=_id(args, "expected_head_turn_id", required=False), namespace=namespace)
    return result


async def _ensure_conversation(service: Service) -> None:
    """Publish the conversation bundle shipped in ``registry_bundles/`` when the registry lacks it."""
    known = {entry["type_id"] for entry in (await service.list_types())["types"]}
    if CONVERSATION in known:
        return
    body = orjson.loads((resources.files("cxdb") / "registry" / "conversation-v1.json").read_bytes())
    await service.publish_bundle(body["bundle_id"], body)


async def _list_types(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.list_types()


async def _get_type(service: Service, args: dict[str, Any], namespace: str | None) -> Any:
    return await service.get_type_version(_str(args, "type_id", required=True) or "",
                                          _int(args, "type_version", 1, 0, (1 << 32) - 1))


CONTEXT_ID = {"context_id": ID}
TOOLS = {tool.name: tool for tool in (
    Tool("list_contexts", "List conversations (contexts), newest activity first. Filter by client_tag prefix.",
         READ, _schema({"limit": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 20},
                        "tag_prefix": TAG}), "ContextList", _list_contexts),
    Tool("get_context", "One context: its head turn and depth, tag, provenance and lineage (parent, forks).",
         READ, _schema(CONTEXT_ID, ("context_id",)), "Context", _get_context),
    Tool("get_turns", "A page of a context's turns, oldest first, ending at the head or before before_turn_id "
                      "(pass next_before_turn_id for older ones). string_limit cuts long strings.",
         READ, _schema({**CONTEXT_ID, "limit": {"type": "integer", "minimum": 0, "maximum": 200, "default": 20},
                        "before_turn_id": ID, "string_limit": {"type": "integer", "minimum": 1,
                                                               "maximum": MAX_STRING_LIMIT},
                        "view": {"type": "string", "enum": ["typed", "raw", "both"], "default": "typed"}},
                       ("context_id",)), "Page", _get_turns),
    Tool("get_turn", "Exactly one turn of a context, whole (no string is cut).",
         READ, _schema({**CONTEXT_ID, "turn_id": ID}, ("context_id", "turn_id")), "Page", _get_turn),
    Tool("get_provenance", "Where a context came from: the provenance object it was created with.",
         READ, _schema(CONTEXT_ID, ("context_id",)), "Provenance", _get_provenance),
    Tool("create_context", "Start a new, empty conversation. client_tag groups contexts (and must be inside the "
                           "token's namespace, if it has one); provenance is any JSON object.",
         WRITE, _schema({"client_tag": TAG, "provenance": {"type": "object"}}), "Context", _create_context),
    Tool("fork_context", "A new context whose history is an existing turn's chain (branching, regenerating).",
         WRITE, _schema({"base_turn_id": ID, "client_tag": TAG, "provenance": {"type": "object"}},
                        ("base_turn_id",)), "Context", _fork_context),
    Tool("append_turn", "Append one typed turn to a context. expected_head_turn_id appends only if no one else "
                        "did since (else a head_moved conflict); idempotency_key makes a retry safe.",
         WRITE, _schema({**CONTEXT_ID, "type_id": {"type": "string", "minLength": 1, "maxLength": 400},
                         "type_version": {"type": "integer", "minimum": 0}, "data": {"type": "object"},
                         "parent_turn_id": ID, "expected_head_turn_id": ID,
                         "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 400}},
                        ("context_id", "type_id", "type_version", "data")), "Appended", _append_turn),
    Tool("append_message", "Append a chat message (role and text) to a context, as a cxdb.chat.Message turn.",
         WRITE, _schema({**CONTEXT_ID, "role": {"type": "string", "enum": list(ROLES)}, "text": {"type": "string"},
                         "parent_turn_id": ID, "expected_head_turn_id": ID,
                         "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 400}},
                        ("context_id", "role", "text")), "Appended", _append_message),
    Tool("list_types", "The registry's types, each with its latest version: what typed turns look like.",
         READ, _schema({}), "TypeList", _list_types),
    Tool("get_type", "One version of a registered type: its fields by tag, with names and types.",
         READ, _schema({"type_id": {"type": "string"}, "type_version": {"type": "integer", "minimum": 0}},
                       ("type_id", "type_version")), "TypeVersion", _get_type),
)}


def _tool_list() -> list[dict[str, Any]]:
    return [{"name": tool.name, "description": tool.description, "inputSchema": tool.input,
             "outputSchema": _output_schema(tool.output),
             "annotations": {"readOnlyHint": tool.scope == READ}} for tool in TOOLS.values()]


TOOL_LIST = _tool_list()


def _check_scope(grant: Grant | None, scope: str) -> None:
    if grant is not None and not allows(grant.scope, scope):
        raise McpError(FORBIDDEN_CODE, f"this needs the scope {scope}", {"required_scope": scope})


async def _call_tool(service: Service, grant: Grant | None, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        raise McpError(-32602, f"no tool {name!r}", {"tools": list(TOOLS)})
    _check_scope(grant, tool.scope)
    args = params.get("arguments") or {}
    if not isinstance(args, dict):
        raise McpError(-32602, "arguments must be an object")
    try:
        value = await tool.call(service, args, grant.namespace if grant else None)
    except CxdbError as exc:
        status = exc.code if exc.code != "INTERNAL_ERROR" else "INTERNAL_ERROR"
        message = exc.message if exc.code != "INTERNAL_ERROR" else "Internal server error"
        details = exc.details if exc.code != "INTERNAL_ERROR" else {}
        envelope = {"error": {"code": status, "message": message, "details": details}}
        return {"content": [{"type": "text", "text": f"{status}: {message}"}], "structuredContent": envelope,
                "isError": True}
    return {"content": [{"type": "text", "text": orjson.dumps(value).decode()}], "structuredContent": value,
            "isError": False}


def context_uri(context_id: int | str) -> str:
    return f"{RESOURCE_PREFIX}{context_id}"


def context_of(uri: Any) -> int:
    if not isinstance(uri, str) or not uri.startswith(RESOURCE_PREFIX):
        raise McpError(-32602, f"resources are {RESOURCE_PREFIX}{{context_id}}", {"uri": uri})
    try:
        return parse_u64(uri[len(RESOURCE_PREFIX):])
    except ValueError as exc:
        raise McpError(-32602, "not a context id", {"uri": uri}) from exc


async def read_context(service: Service, context_id: int, namespace: str | None) -> dict[str, Any]:
    """The resource's content: the context's newest page, typed, long strings cut."""
    try:
        page = await service.page_json(context_id, limit=RESOURCE_PAGE,
                                       options=RenderOptions(bytes_render="len_only",
                                                             string_limit=RESOURCE_STRING_LIMIT),
                                       namespace=namespace)
    except NotFound as exc:
        raise McpError(-32002, exc.message, {"uri": context_uri(context_id)}) from exc
    return {"contents": [{"uri": context_uri(context_id), "mimeType": "application/json", "text": page.decode()}]}


async def _list_resources(service: Service, grant: Grant | None, params: dict[str, Any]) -> dict[str, Any]:
    cursor = params.get("cursor")
    before = parse_list_cursor(cursor) if isinstance(cursor, str) else None
    if cursor is not None and before is None:
        raise McpError(-32602, "a cursor comes from nextCursor")
    listed = await service.list_contexts(limit=LIST_PAGE, before=before, namespace=grant.namespace if grant else None)
    shown = listed["contexts"]
    result: dict[str, Any] = {"resources": [{
        "uri": context_uri(item["context_id"]), "name": f"context {item['context_id']}",
        "title": item["client_tag"] or f"context {item['context_id']}", "mimeType": "application/json",
        "description": f"{item['head_depth']} turns; last activity {item['last_activity_at']}"} for item in shown]}
    if listed["next_before"] is not None:
        result["nextCursor"] = listed["next_before"]
    return result


INSTRUCTIONS = ("cxdb stores agent conversations. A context is a conversation (a pointer to its newest turn); "
                "turns are immutable, typed JSON messages. Read with get_turns (oldest first; page back with "
                "next_before_turn_id), write with append_message or append_turn, branch with fork_context. "
                "Subscribe to cxdb://contexts/{id} to hear of new turns without polling.")
CAPABILITIES = {"tools": {"listChanged": False}, "resources": {"subscribe": True, "listChanged": False}}
SERVER_INFO = {"name": "cxdb", "version": __version__}


async def handle(service: Service, grant: Grant | None, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The result of one JSON-RPC request (not initialize, not subscriptions: the transport's)."""
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOL_LIST}
    if method == "tools/call":
        return await _call_tool(service, grant, params)
    if method == "resources/list":
        _check_scope(grant, READ)
        return await _list_resources(service, grant, params)
    if method == "resources/templates/list":
        return {"resourceTemplates": [{"uriTemplate": RESOURCE_PREFIX + "{context_id}", "name": "context",
                                       "mimeType": "application/json",
                                       "description": "A conversation: its newest page of turns, typed."}]}
    if method == "resources/read":
        _check_scope(grant, READ)
        return await read_context(service, context_of(params.get("uri")), grant.namespace if grant else None)
    raise McpError(-32601, f"no method {method!r}")

