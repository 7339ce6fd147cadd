"""The OpenAPI 3.1 document of every route the server answers: the one description of the API.

Built from Python data, once per app. ``tests/http/test_openapi.py`` checks that it validates as
OpenAPI 3.1, that every route registered on the router is in it and every path in it is routed, and
the contract tests validate every JSON body they receive against its schema for that route and status.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..errors import HTTP_STATUS
from ..model import U64_PATTERN
from ..service import RENDER_CHOICES
from ..service.tokens import SCOPES
from .access import rule_for

__all__ = ["build_spec"]

JSON = "application/json"
U64_MAX = (1 << 64) - 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required is not None:
        schema["required"] = required
    return schema


U64 = {"type": "string", "pattern": U64_PATTERN}
ID = {**U64, "description": "A u64 id as a canonical decimal string."}
ID_OR_NULL = {"oneOf": [ID, {"type": "null"}]}
ID_IN = {"oneOf": [U64,
                   {"type": "integer", "minimum": 0, "maximum": U64_MAX}, {"type": "null"}],
         "description": "A u64 id, as a decimal string or an integer; \"0\" and null mean none."}
TIME = {"type": "string", "description": "ISO 8601 UTC with milliseconds."}
TYPE_REF = _obj({"type_id": {"type": "string"}, "type_version": {"type": "integer", "minimum": 0}},
                ["type_id", "type_version"])

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({
        "code": {"type": "string", "enum": sorted({klass.code for klass in HTTP_STATUS})},
        "message": {"type": "string"},
        "details": {"type": "object"}}, ["code", "message", "details"])}, ["error"]),
    "Lineage": _obj({"parent_context_id": ID_OR_NULL, "root_context_id": ID, "fork_turn_id": ID_OR_NULL,
                     "children": {"type": "array", "items": ID, "maxItems": 256},
                     "child_count": {"type": "integer", "minimum": 0}},
                    ["parent_context_id", "root_context_id", "fork_turn_id", "children", "child_count"]),
    "Context": _obj({"context_id": ID, "head_turn_id": ID, "head_depth": {"type": "integer", "minimum": 0},
                     "created_at": TIME, "last_activity_at": TIME,
                     "client_tag": {"type": ["string", "null"]}, "provenance": {"type": ["object", "null"]},
                     "lineage": _ref("Lineage")},
                    ["context_id", "head_turn_id", "head_depth", "created_at", "last_activity_at", "client_tag"]),
    "ContextList": _obj({"contexts": {"type": "array", "items": _ref("Context")},
                         "total": {"type": "integer", "minimum": 0},
                         "next_before": {"oneOf": [{"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
                                                   {"type": "null"}],
                                         "description": "Pass as before for the next page; null on the last."}},
                        ["contexts", "total", "next_before"]),
    "HeadHistory": _obj({"context_id": ID, "heads": {"type": "array", "items": _obj({
        "head_turn_id": ID, "head_depth": {"type": "integer", "minimum": 1}, "replaced_by_turn_id": ID,
        "replaced_at": TIME}, ["head_turn_id", "head_depth", "replaced_by_turn_id", "replaced_at"])},
        "next_before": ID_OR_NULL}, ["context_id", "heads", "next_before"]),
    "Provenance": _obj({"context_id": ID, "provenance": {"type": ["object", "null"]}},
                       ["context_id", "provenance"]),
    "Children": _obj({"context_id": ID, "children": {"type": "array", "items": _ref("Context")},
                      "total": {"type": "integer", "minimum": 0}}, ["context_id", "children", "total"]),
    "CreateContext": _obj({"base_turn_id": ID_IN, "client_tag": {"type": ["string", "null"], "maxLength": 400},
                           "provenance": {"type": ["object", "null"]}}, extra=True),
    "ForkContext": _obj({"base_turn_id": {"oneOf": [{**U64, "not": {"const": "0"}},
                                                     {"type": "integer", "minimum": 1, "maximum": U64_MAX}],
                                          "description": "An existing turn (\"0\" is 422, a missing turn 404)."},
                         "client_tag": {"type": ["string", "null"], "maxLength": 400},
                         "provenance": {"type": ["object", "null"]}}, ["base_turn_id"], extra=True),
    "Append": {**_obj({"type_id": {"type": "string", "minLength": 1, "maxLength": 400},
                       "type_version": {"type": "integer", "minimum": 0, "maximum": (1 << 32) - 1},
                       "data": {"type": "object"}, "payload": {"type": "object"},
                       "parent_turn_id": ID_IN,
                       "expected_head_turn_id": {**ID_IN, "description": (
                           "Append only if the context's head is this turn when the append commits (\"0\": "
                           "empty); else 409 with details.reason head_moved. Without parent_turn_id, the "
                           "parent is this head.")},
                       "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 400}},
                      ["type_id", "type_version"], extra=True),
               "anyOf": [{"required": ["data"]}, {"required": ["payload"]}]},
    "Appended": _obj({"context_id": ID, "turn_id": ID, "parent_turn_id": ID,
                      "depth": {"type": "integer", "minimum": 1},
                      "content_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                      "replaced_head_turn_id": {**ID, "description": (
                          "Present when the new turn does not descend from the head it replaced: that head, "
                          "now in the context's head history.")}},
                     ["context_id", "turn_id", "parent_turn_id", "depth", "content_hash"]),
    "AppendBatch": _obj({
        "turns": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
            **_obj({"type_id": {"type": "string", "minLength": 1, "maxLength": 400},
                    "type_version": {"type": "integer", "minimum": 0, "maximum": (1 << 32) - 1},
                    "data": {"type": "object"}, "payload": {"type": "object"},
                    "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 400}},
                   ["type_id", "type_version"], extra=True),
            "anyOf": [{"required": ["data"]}, {"required": ["payload"]}]}},
        "parent_turn_id": ID_IN,
        "expected_head_turn_id": {**ID_IN, "description": "As for a single append."}}, ["turns"], extra=True),
    "AppendedBatch": _obj({
        "context_id": ID, "head_turn_id": ID, "head_depth": {"type": "integer", "minimum": 1},
        "turns": {"type": "array", "items": _obj({
            "turn_id": ID, "depth": {"type": "integer", "minimum": 1},
            "content_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}, ["turn_id", "depth", "content_hash"])},
        "replaced_head_turn_id": ID}, ["context_id", "head_turn_id", "head_depth", "turns"]),
    "TurnError": _obj({"code": {"type": "string"}, "message": {"type": "string"}, "path": {"type": "string"}},
                      ["code", "message"]),
    "Turn": _obj({
        "turn_id": ID, "parent_turn_id": ID, "depth": {"type": "integer", "minimum": 1},
        "declared_type": TYPE_REF,
        "decoded_as": {"oneOf": [TYPE_REF, {"type": "null"}]},
        "data": {"description": "The payload: typed (field names) or generic; null when undecodable."},
        "unknown": {"type": "object"}, "error": _ref("TurnError"),
        "truncated": {"type": "array", "items": {"type": "string"},
                      "description": "With string_limit: the JSON paths in data of the strings cut."},
        "content_hash_b3": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "encoding": {"type": "integer"}, "compression": {"type": "integer", "enum": [0, 1, 2]},
        "uncompressed_len": {"type": "integer", "minimum": 0},
        "bytes_b64": {"type": ["string", "null"]}},
        ["turn_id", "parent_turn_id", "depth", "declared_type"]),
    "Page": _obj({
        "meta": _obj({"context_id": ID, "head_turn_id": ID, "head_depth": {"type": "integer", "minimum": 0},
                      "registry_bundle_id": {"type": ["string", "null"]}},
                     ["context_id", "head_turn_id", "head_depth", "registry_bundle_id"]),
        "turns": {"type": "array", "items": _ref("Turn"), "maxItems": 1000},
        "next_before_turn_id": ID_OR_NULL}, ["meta", "turns", "next_before_turn_id"]),
    "Bundle": {"type": "object", "required": ["registry_version", "bundle_id"],
               "properties": {"registry_version": {"const": 1}, "bundle_id": {"type": "string"},
                              "types": {"type": "object"}, "enums": {"type": "object"}},
               "description": "A registry bundle; docs/registry.md gives the field descriptors."},
    "Published": _obj({"bundle_id": {"type": "string"}, "created": {"const": True}}, ["bundle_id", "created"]),
    "BundleList": _obj({"bundles": {"type": "array", "items": _obj(
        {"bundle_id": {"type": "string"}, "sequence": {"type": "integer", "minimum": 1}, "published_at": TIME},
        ["bundle_id", "sequence", "published_at"])}}, ["bundles"]),
    "TypeList": _obj({"types": {"type": "array", "items": _obj(
        {"type_id": {"type": "string"}, "latest_version": {"type": "integer"}, "bundle_id": {"type": "string"}},
        ["type_id", "latest_version", "bundle_id"])}}, ["types"]),
    "TypeVersion": _obj({"type_id": {"type": "string"}, "type_version": {"type": "integer"},
                         "fields": {"type": "object"}, "bundle_id": {"type": "string"}},
                        ["type_id", "type_version", "fields", "bundle_id"]),
    "Health": _obj({"status": {"const": "ok"}, "version": {"type": "string"},
                    "uptime_seconds": {"type": "integer", "minimum": 0}}, ["status", "version", "uptime_seconds"]),
    "Stats": _obj({name: {"type": "integer", "minimum": 0} for name in (
        "contexts", "turns", "blobs", "storage_bytes", "blob_stored_bytes", "blob_raw_bytes", "dedup_hits")}
        | {"dedup_hit_rate": {"type": "number", "minimum": 0, "maximum": 1},
           "oldest_event_sequence": {**U64, "description": "The oldest event retained; 0 when none is."},
           "newest_event_sequence": {**U64, "description": "The newest event recorded; 0 before any."},
           "reclaiming": _obj({name: {"type": "integer", "minimum": 0} for name in (
               "contexts", "turns", "blobs", "bytes")}, ["contexts", "turns", "blobs", "bytes"])},
        ["contexts", "turns", "blobs", "storage_bytes", "dedup_hit_rate"]),
}

_TOKEN_FIELDS = {
    "token_id": {"type": "string", "pattern": "^[0-9a-z]{1,64}$"}, "name": {"type": ["string", "null"]},
    "scope": {"type": "string", "enum": list(SCOPES)}, "namespace": {"type": ["string", "null"]},
    "created_at": TIME, "expires_at": {"type": ["string", "null"]}, "revoked_at": {"type": ["string", "null"]},
    "state": {"type": "string", "enum": ["active", "expired", "revoked"]}}
SCHEMAS |= {
    "Token": _obj(_TOKEN_FIELDS, list(_TOKEN_FIELDS)),
    "WhoAmI": _obj({"auth": {"type": "string", "enum": ["off", "tokens"]},
                    "token_id": {"type": ["string", "null"]}, "scope": {"type": "string", "enum": list(SCOPES)},
                    "namespace": {"type": ["string", "null"]}}, ["auth", "token_id", "scope", "namespace"]),
    "TokenList": _obj({"tokens": {"type": "array", "items": _ref("Token")}}, ["tokens"]),
    "CreateToken": _obj({
        "scope": {"type": "string", "enum": list(SCOPES)},
        "namespace": {"type": ["string", "null"], "minLength": 1, "maxLength": 400,
                      "description": "A client_tag prefix: the token sees only contexts whose tag starts with it "
                                     "(not with cxdb:admin)."},
        "expires_in": {"oneOf": [{"type": "integer", "minimum": 1},
                                 {"type": "string", "pattern": "^[0-9]{1,9} *[smhd]?$"}, {"type": "null"}],
                       "description": "Lifetime: seconds, or a number with s, m, h or d (\"30d\"); none: never."},
        "name": {"type": ["string", "null"], "maxLength": 200}}, ["scope"]),
    "CreatedToken": _obj({"token": {"type": "string", "description": "The bearer token: shown only this once."},
                          **_TOKEN_FIELDS}, ["token", *_TOKEN_FIELDS]),
}
_COUNT = {"type": "integer", "minimum": 0}
_IMPORT_FIELDS = {
    "source_store_id": {"type": "string"}, "bundles": _COUNT, "bundles_present": _COUNT, "contexts": _COUNT,
    "contexts_present": _COUNT, "turns": _COUNT, "turns_present": _COUNT,
    "nothing_new": {"type": "boolean", "description": "True when the store held everything already."},
    "id_map": {"type": "object", "description": "`{\"same\": true}` when ids were kept; else, for contexts and "
                                                 "turns, blocks `{from, to, count}` of source ids and the ids given."}}
SCHEMAS |= {"ImportReport": _obj(_IMPORT_FIELDS, list(_IMPORT_FIELDS))}
_NDJSON = "application/x-ndjson"

_DESCRIPTIONS = {400: "Bad request: malformed JSON, a bad parameter or path id", 404: "Not found",
                 401: "No valid bearer token (--auth tokens); WWW-Authenticate: Bearer",
                 403: "The token lacks the scope the route needs (details.required_scope), or has a namespace "
                      "and the route shows the whole store",
                 405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
                 413: "Body too large", 422: "Unprocessable content", 424: "Failed dependency",
                 429: "Over --rate-limit (when set); Retry-After says when to try again",
                 500: "Internal error (generic; the log has the details)",
                 503: "Store closing, or its database out of reach; Retry-After says when to try again",
                 507: "No space left on the device holding the store"}
_ALWAYS = (400, 429, 500, 503)


_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": _DESCRIPTIONS[status], "content": {JSON: {"schema": _ref("Error")}},
                          **({"headers": _RETRY_AFTER} if status in (429, 503) else {}),
                          **({"headers": _CHALLENGE} if status == 401 else {})}
            for status in sorted({*statuses, *_ALWAYS})}


def _ok(status: int, schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = headers
    return {str(status): response}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


BOOL = {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no"]}


def _sse_event(events: list[str], id_description: str) -> dict[str, Any]:
    """One event of a Server-Sent Events stream, as its fields."""
    return {"type": "object", "required": ["data"], "properties": {
        "id": {**U64, "description": id_description},
        "event": {"type": "string", "enum": events},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "The event's fields, as JSON."},
        "retry": {"type": "integer"}}}


SSE_EVENT = _sse_event(["context_created", "turn_appended", "registry_published", "context_deleted", "reset"],
                       "The event's sequence (absent on reset).")
FOLLOW_EVENT = _sse_event(["turn", "rebase"], "The turn's id; on a rebase, the common ancestor's.")
WEBSOCKET = ("The same stream is a WebSocket when the request asks for the upgrade: one JSON text message per "
             "event, `{\"event\", \"id\", \"data\"}` (`id` a decimal string, `data` an object), pings on idle "
             "connections, the resume point as a query parameter.")
CONTEXT_ID = _path("context_id", U64)
BLOCKS = [_query("include_provenance", BOOL, "Include provenance."),
          _query("include_lineage", BOOL, "Include the lineage block.")]
PAGE_PARAMS = [
    _query("limit", {"type": "integer", "minimum": 0, "default": 64},
           "Most turns (capped at 1000); 0 returns meta and the next cursor only."),
    _query("before_turn_id", U64,
           "A turn on this context's chain: the page ends just before it."),
    _query("view", {"type": "string", "enum": ["typed", "raw", "both"], "default": "typed"}, "What each turn shows."),
    _query("type_hint_mode", {"type": "string", "enum": ["inherit", "latest", "explicit"], "default": "inherit"},
           "Which descriptor decodes each turn."),
    _query("as_type_id", {"type": "string"}, "With type_hint_mode=explicit."),
    _query("as_type_version", {"type": "integer", "minimum": 0, "maximum": (1 << 32) - 1},
           "With type_hint_mode=explicit."),
    _query("include_unknown", BOOL, "Add a turn-level unknown object keyed by tag."),
    _query("string_limit", {"type": "integer", "minimum": 1, "maximum": 65536},
           "Cut each string in data longer than this many UTF-8 bytes, at a character boundary; the turn "
           "lists the cut ones in truncated. Ignored with turn_id."),
    *[_query(name, {"type": "string", "enum": list(allowed), "default": allowed[0]}, f"Render option {name}.")
      for name, allowed in RENDER_CHOICES.items()],
]
IDEMPOTENT = {"Idempotent-Replayed": {"description": "true when an idempotency key replayed an earlier turn",
                                      "schema": {"type": "string"}}}


def _append(summary: str, operation_id: str, body: str = "Append", answer: str = "Appended") -> dict[str, Any]:
    return {"post": {
        "summary": summary, "operationId": operation_id, "parameters": [CONTEXT_ID],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(body)}}},
        "responses": {**_ok(201, answer, "Stored"),
                      **_ok(200, answer, "An idempotent replay of an earlier request", IDEMPOTENT),
                      **_errors(404, 409, 412, 413, 422, 507)}}}


def _create(summary: str, operation_id: str, errors: tuple[int, ...], body: str = "CreateContext") -> dict[str, Any]:
    return {"post": {
        "summary": summary, "operationId": operation_id,
        "requestBody": {"required": body == "ForkContext", "content": {JSON: {"schema": _ref(body)}}},
        "responses": {**_ok(201, "Context", "The new context",
                            {"Location": {"schema": {"type": "string"}, "description": "The context's URL"}}),
                      **_errors(*errors)}}}


def _get(summary: str, operation_id: str, schema: str, parameters: list[dict[str, Any]] | None = None,
         errors: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": operation_id, "parameters": parameters or [],
                    "responses": {**_ok(200, schema, summary), **_errors(*errors)}}}


def _text(summary: str, operation_id: str, media: str, parameters: list[dict[str, Any]] | None = None,
          errors: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": operation_id, "parameters": parameters or [],
                    "responses": {"200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}},
                                  **_errors(*errors)}}}


_JSONRPC_ERROR = {"type": "object", "required": ["jsonrpc", "error"], "properties": {
    "jsonrpc": {"const": "2.0"}, "id": {}, "error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"}, "data": {}}}}}
_MCP_REFUSALS = {str(status): {"description": f"{what}: the envelope, or (revision 2026-07-28) a JSON-RPC error",
                               "content": {JSON: {"schema": {"oneOf": [_ref("Error"), _JSONRPC_ERROR]}}}}
                 for status, what in ((400, "A malformed or refused message"), (404, "No such session or method"))}


def _paths() -> dict[str, Any]:
    bundle_id = _path("bundle_id", {"type": "string", "minLength": 1})
    return {
        "/v1/contexts/create": _create("Create a context (or fork, with a base turn)", "createContext",
                                       (404, 413, 422, 507)),
        "/v1/contexts": {**_create("Create a context (alias of /v1/contexts/create)", "createContextAlias",
                                   (404, 413, 422, 507)),
                         **_get("List contexts, newest activity first", "listContexts", "ContextList", [
                             _query("limit", {"type": "integer", "minimum": 0, "default": 100},
                                    "Most contexts (capped at 10,000)."),
                             _query("tag", {"type": "string"}, "Only contexts with exactly this client_tag."),
                             _query("before", {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
                                    "The next_before of the page before: the page after it."),
                             _query("tag_prefix", {"type": "string", "maxLength": 400},
                                    "Only contexts whose client_tag starts with this (costs O(contexts under it))."),
                             *BLOCKS])},
        "/v1/contexts/fork": _create("Fork a context at an existing turn", "forkContext", (404, 413, 422, 507),
                                     "ForkContext"),
        "/v1/contexts/{context_id}": {
            **_get("A context", "getContext", "Context", [CONTEXT_ID, *BLOCKS], (404,)),
            "delete": {
                "summary": "Delete a context (and with recursive, every descendant)", "operationId": "deleteContext",
                "description": "Gone from every read, list and index at once; its turns and blobs that no "
                               "remaining context reaches are reclaimed in the background (docs/operations.md). "
                               "Forks keep their history. At most 10,000 contexts at once (422 beyond).",
                "parameters": [CONTEXT_ID, _query("recursive", BOOL, "Also delete every descendant context.")],
                "responses": {"204": {"description": "Deleted"}, **_errors(404, 422, 507)}}},
        "/v1/contexts/{context_id}/children": _get(
            "Contexts forked from this one", "listChildren", "Children",
            [CONTEXT_ID, _query("recursive", BOOL, "Every descendant, breadth first."),
             _query("limit", {"type": "integer", "minimum": 0, "default": 256}, "Most contexts listed."), *BLOCKS],
            (404,)),
        "/v1/contexts/{context_id}/append": _append("Append a turn", "appendTurn"),
        "/v1/contexts/{context_id}/turns": {
            **_append("Append a turn (alias of .../append)", "appendTurnAlias"),
            **_get("A page of turns, oldest first, ending at the head or before a cursor", "getTurns", "Page",
                   [CONTEXT_ID, *PAGE_PARAMS,
                    _query("turn_id", U64, "Exactly this turn of the context's chain, whole (404 when it is not "
                                           "on it); not with before_turn_id.")], (404, 422, 424))},
        "/v1/contexts/{context_id}/append-batch": _append(
            "Append up to 1,000 turns as a chain, all in one transaction or none", "appendBatch", "AppendBatch",
            "AppendedBatch"),
        "/v1/contexts/{context_id}/heads": _get(
            "The heads appends moved the context away from, newest first", "listHeads", "HeadHistory",
            [CONTEXT_ID, _query("limit", {"type": "integer", "minimum": 0, "default": 64}, "Most entries."),
             _query("before", U64, "Entries replaced before this turn (next_before of the last answer).")],
            (404,)),
        "/v1/contexts/{context_id}/export": {"get": {
            "summary": "One context as an export (docs/export-format.md): its chain, replaced heads and keys",
            "operationId": "exportContext",
            "description": "JSON Lines: the header, the registry's bundles, the context's group and the end "
                           "record. A stream that fails once begun ends without its end record, so an import "
                           "of it reports it truncated.",
            "parameters": [CONTEXT_ID],
            "responses": {"200": {"description": "The export", "content": {_NDJSON: {"schema": {"type": "string"}}}},
                          **_errors(404)}}},
        "/v1/import": {"post": {
            "summary": "Import an export (plain or zstd-compressed), streamed", "operationId": "importExport",
            "description": "Ids are kept in an empty store and given fresh otherwise (the same way each time "
                           "for one source, so importing an export again adds nothing). A bad line stops the "
                           "import with 422 naming it in details.line; the contexts before it are imported.",
            "parameters": [_query("preserve_ids", {"type": "boolean", "default": False},
                                  "Keep the export's ids even in a store that holds data (422 where one "
                                  "collides).")],
            "requestBody": {"required": True, "content": {
                _NDJSON: {"schema": {"type": "string"}},
                "application/zstd": {"schema": {"type": "string", "contentMediaType": "application/zstd"}}}},
            "responses": {**_ok(200, "ImportReport", "What was imported, and what the store held already"),
                          **_errors(422, 507)}}},
        "/v1/contexts/{context_id}/provenance": _get(
            "A context's provenance", "getProvenance", "Provenance", [CONTEXT_ID], (404,)),
        "/v1/registry/bundles": _get("Every bundle in publish order", "listBundles", "BundleList"),
        "/v1/registry/bundles/{bundle_id}": {
            "put": {"summary": "Publish a bundle", "operationId": "publishBundle", "parameters": [bundle_id],
                    "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Bundle")}}},
                    "responses": {**_ok(201, "Published", "A new bundle was stored"),
                                  "204": {"description": "An equal bundle was already stored"},
                                  **_errors(409, 413, 422, 507)}},
            "get": {"summary": "A bundle as published", "operationId": "getBundle",
                    "parameters": [bundle_id, {"name": "If-None-Match", "in": "header", "required": False,
                                               "schema": {"type": "string"}}],
                    "responses": {**_ok(200, "Bundle", "The bundle"),
                                  "304": {"description": "Not modified"}, **_errors(404)}}},
        "/v1/registry/types": _get("Each type's latest version", "listTypes", "TypeList"),
        "/v1/registry/types/{type_id}/versions/{type_version}": _get(
            "One version of a type", "getTypeVersion", "TypeVersion",
            [_path("type_id", {"type": "string", "minLength": 1}),
             _path("type_version", {"type": "string", "pattern": "^[0-9]{1,10}$"})], (404,)),
        "/v1/blobs/{content_hash}": {"get": {
            "summary": "A payload's uncompressed msgpack bytes", "operationId": "getBlob",
            "parameters": [_path("content_hash", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})],
            "responses": {"200": {"description": "The bytes", "content": {"application/octet-stream": {
                "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}}, **_errors(404)}}},
        "/health": _get("Liveness", "health", "Health"),
        "/healthz": _get("Liveness (alias)", "healthz", "Health"),
        "/v1/stats": _get("Store counters (O(1); what awaits reclamation, O(that) on PostgreSQL)", "stats",
                          "Stats"),
        "/v1/events": {"get": {
            "summary": "The store's changes as Server-Sent Events, resumable with no gap", "operationId": "events",
            "description": "Events `context_created`, `turn_appended`, `registry_published` and "
                           "`context_deleted`, each with "
                           "`id: <sequence>` and JSON `data` (ids as decimal strings). Resume with the "
                           "`Last-Event-ID` header or `after`: every retained event after it is sent, then the "
                           "stream goes on live. A resume point older than the retention window first gets "
                           "`event: reset` with `{\"oldest_sequence\"}`. Comment heartbeats keep an idle "
                           "stream open. " + WEBSOCKET,
            "parameters": [
                _query("after", U64, "Resume after this sequence (as Last-Event-ID does)."),
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": U64,
                 "description": "The last sequence received: the stream resumes after it."},
                {"name": "context_id", "in": "query", "required": False, "schema": {"type": "array", "items": U64},
                 "style": "form", "explode": True,
                 "description": "Only events of these contexts (repeatable, at most 256)."},
                _query("events", {"type": "string", "pattern": "^[a-z_]+(,[a-z_]+)*$"},
                       "Comma-separated kinds: context_created, turn_appended, registry_published, "
                       "context_deleted."),
            ],
            "responses": {"200": {"description": "An endless stream of events, each described by this schema",
                                  "content": {"text/event-stream": {"schema": SSE_EVENT}}}, **_errors()}}},
        "/v1/contexts/{context_id}/follow": {"get": {
            "summary": "One context's turns as they are appended, as Server-Sent Events", "operationId": "follow",
            "description": "Each `turn` event's `data` is a turn exactly as `GET .../turns` renders it with the same "
                           "options, and its `id` is the turn id. `after_turn_id` (or `Last-Event-ID`) first sends "
                           "the chain's turns after it, oldest first (0: all of them); `tail` the newest ones; then "
                           "the stream goes on live. When the head moves to a turn that does not descend from the "
                           "last one sent, `event: rebase` carries `{\"common_ancestor_turn_id\"}` and the turns "
                           "from there follow, so the turns received always equal a fresh page. A `Last-Event-ID` "
                           "the head moved away from starts with that rebase; an `after_turn_id` off the chain is "
                           "404. " + WEBSOCKET,
            "parameters": [
                CONTEXT_ID,
                _query("after_turn_id", U64, "Send the chain's turns after this one first (0: from the first)."),
                _query("tail", {"type": "integer", "minimum": 0, "default": 0},
                       "Without after_turn_id: send the newest this many turns first (capped at 1000)."),
                {"name": "Last-Event-ID", "in": "header", "required": False, "schema": U64,
                 "description": "The last turn received: the stream resumes after it (with a rebase if the head "
                                "moved away from it)."},
                _query("last_event_id", U64, "As the Last-Event-ID header, where headers cannot be set (a "
                                             "browser's WebSocket)."),
                *PAGE_PARAMS[2:]],
            "responses": {"200": {"description": "An endless stream of turns and rebases",
                                  "content": {"text/event-stream": {"schema": FOLLOW_EVENT}}},
                          **_errors(404, 422, 424)}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {JSON: {"schema": {"type": "object"}}}},
                                                **_errors()}}},
        "/docs": _text("Swagger UI, served from the package", "docs", "text/html"),
        "/docs/{asset}": {"get": {
            "summary": "A Swagger UI asset", "operationId": "docsAsset",
            "parameters": [_path("asset", {"type": "string"})],
            "responses": {"200": {"description": "The asset", "content": {"*/*": {"schema": {"type": "string"}}}},
                          **_errors(404)}}},
        "/llms.txt": _text("A short guide for LLM agents", "llmsTxt", "text/plain"),
        "/": {"get": {"summary": "A browser goes to the viewer (302 to ui/); anything else gets a small index",
                      "operationId": "root",
                      "responses": {"200": {"description": "Where things are",
                                            "content": {JSON: {"schema": {"type": "object"}}}},
                                    "302": {"description": "To the viewer, for a request that accepts HTML"},
                                    **_errors()}}},
        "/ui": {"get": {"summary": "The viewer (301 to ui/)", "operationId": "viewerRedirect",
                        "responses": {"301": {"description": "To /ui/"}, **_errors()}}},
        "/ui/": _text("The conversation viewer (docs/viewer.md)", "viewer", "text/html"),
        "/ui/{asset}": {"get": {
            "summary": "A file of the viewer", "operationId": "viewerAsset",
            "parameters": [_path("asset", {"type": "string"})],
            "responses": {"200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
                          **_errors(404)}}},
        "/mcp": {
            "post": {"summary": "MCP (Streamable HTTP): one JSON-RPC message, or a 2025-03-26 batch",
                     "operationId": "mcpPost",
                     "description": "The Model Context Protocol (docs/mcp.md): initialize answers Mcp-Session-Id, "
                                    "which every later message names. Each tool needs the scope of the route it "
                                    "wraps.",
                     "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": False,
                                     "schema": {"type": "string"}},
                                    {"name": "MCP-Protocol-Version", "in": "header", "required": False,
                                     "schema": {"type": "string"}}],
                     "requestBody": {"required": True, "content": {JSON: {"schema": {
                         "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}}},
                     "responses": {"200": {"description": "The JSON-RPC response(s)", "content": {JSON: {"schema": {
                         "oneOf": [{"type": "object"}, {"type": "array"}]}}}},
                                   "202": {"description": "Notifications and responses: accepted"},
                                   **_errors(404, 413, 422), **_MCP_REFUSALS}},
            "get": {"summary": "MCP: the session's stream of server messages (resource updates)",
                    "operationId": "mcpStream",
                    "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": True,
                                    "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "Server-Sent Events, one JSON-RPC notification each",
                                          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                  **_errors(404)}},
            "delete": {"summary": "MCP: end the session", "operationId": "mcpEnd",
                       "parameters": [{"name": "Mcp-Session-Id", "in": "header", "required": True,
                                       "schema": {"type": "string"}}],
                       "responses": {"204": {"description": "Ended"}, **_errors(404)}}},
        "/v1/whoami": _get("What the caller's token may do", "whoami", "WhoAmI"),
        "/metrics": _text("Prometheus metrics, summed over the workers", "metrics", "text/plain", errors=(404,)),
        "/v1/tokens": {
            **_get("Every access token (never the tokens themselves)", "listTokens", "TokenList"),
            "post": {"summary": "Make an access token; the answer shows it once", "operationId": "createToken",
                     "requestBody": {"required": True, "content": {JSON: {"schema": _ref("CreateToken")}}},
                     "responses": {**_ok(201, "CreatedToken", "The new token"), **_errors(413, 422, 507)}}},
        "/v1/tokens/{token_id}": {"delete": {
            "summary": "Revoke a token: every server refuses it within a second", "operationId": "revokeToken",
            "parameters": [_path("token_id", {"type": "string"})],
            "responses": {"204": {"description": "Revoked (again is a no-op)"}, **_errors(404, 507)}}},
    }


def _secure(path: str, method: str, operation: dict[str, Any]) -> None:
    """The scope a route needs (the table in :mod:`cxdb.http.access`), and its 401 and 403."""
    rule = rule_for(method.upper(), path)
    if rule.scope is None:
        operation["security"] = []
        return
    operation["security"] = [{"bearer": [rule.scope]}]
    operation["description"] = (operation.get("description", "") + (" " if operation.get("description") else "")
                                + f"Needs `{rule.scope}` under --auth tokens"
                                + (", and a token without a namespace." if rule.whole_store else "."))
    for status, response in _errors(401, 403).items():
        operation["responses"].setdefault(status, response)


def _tag(path: str) -> str:
    if path.endswith(("/append", "/turns")):
        return "turns"
    if path.startswith("/v1/contexts"):
        return "contexts"
    if path.startswith("/v1/registry"):
        return "registry"
    if path.startswith(("/v1/tokens", "/v1/whoami")):
        return "tokens"
    if path == "/v1/import" or path.endswith("/export"):
        return "portability"
    if path == "/mcp":
        return "mcp"
    if path.startswith("/ui") or path == "/":
        return "viewer"
    return "blobs" if path.startswith("/v1/blobs") else "server"


TAGS = [{"name": "contexts", "description": "Create, fork, list and read contexts."},
        {"name": "turns", "description": "Append turns and page through them."},
        {"name": "registry", "description": "Publish and read type bundles."},
        {"name": "blobs", "description": "Raw payload bytes by content hash."},
        {"name": "tokens", "description": "Access tokens (cxdb:admin), and what the caller's token may do."},
        {"name": "portability", "description": "Export and import contexts (cxdb:admin)."},
        {"name": "viewer", "description": "The conversation viewer in a browser."},
        {"name": "mcp", "description": "The Model Context Protocol, for agents."},
        {"name": "server", "description": "Health, counters, metrics and this description."}]


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document as a JSON-ready dict."""
    paths = _paths()
    for path, item in paths.items():
        for method, operation in item.items():
            operation["tags"] = [_tag(path)]
            _secure(path, method, operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "cxdb", "version": __version__, "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
                 "description": "An AI context store: conversation turns on a DAG, typed by registry bundles. "
                                "Ids are u64 decimal strings. Every error has the envelope "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "servers": [{"url": "/"}],
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "An access token (docs/security.md): `Authorization: Bearer cxdb_...`. Needed on every "
                           "route but the open ones when the server runs with --auth tokens."}}},
    }
