"""The export format, version 1 (docs/export-format.md): JSON Lines, one record per line.

Pure: records to lines and lines to records, with every check a line can be given on its own. Ids are
decimal strings, as in the HTTP API; payloads are base64 of their msgpack bytes; hashes and request
digests are hex.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import Unprocessable
from ..model import BlobHash, ContextId, ContextRecord, Lineage, TurnId, TurnRecord, parse_u64
from ..storage import HeadEntry, KeyEntry

__all__ = ["FORMAT", "VERSION", "BadExport", "Reader", "bundle_line", "context_line", "end_line", "head_line",
           "header_line", "key_line", "replaced_line", "turn_line"]

FORMAT = "cxdb-export"
VERSION = 1
MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest line an import reads: a payload of 48 MiB, base64, with its fields."""
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_STORE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


class BadExport(Unprocessable):
    """A line of an export that cannot be imported: ``details.line`` names it (1 is the header)."""

    def __init__(self, line: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"line {line}: {message}", {"line": line, **(details or {})})
        self.line = line


def _dump(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _id(value: int | None) -> str | None:
    return str(value) if value is not None else None


def header_line(cxdb_version: str, store_id: str, exported_at_ms: int, turns: int | None,
                selection: dict[str, Any]) -> bytes:
    return _dump({"format": FORMAT, "version": VERSION, "cxdb_version": cxdb_version,
                  "source": {"store_id": store_id}, "exported_at_ms": exported_at_ms,
                  "turns": turns, "selection": selection})


def bundle_line(bundle_id: str, published_at_ms: int, body: bytes) -> bytes:
    return b'{"kind":"bundle","bundle_id":' + orjson.dumps(bundle_id) + b',"published_at_ms":' + \
        str(published_at_ms).encode() + b',"body":' + body + b"}\n"


def context_line(context: ContextRecord) -> bytes:
    lineage = context.lineage
    return _dump({"kind": "context", "context_id": str(context.context_id), "created_at_ms": context.created_at_ms,
                  "client_tag": context.client_tag, "provenance": context.provenance,
                  "parent_context_id": _id(lineage.parent_context_id), "root_context_id": str(lineage.root_context_id),
                  "fork_turn_id": _id(lineage.fork_turn_id)})


def turn_line(turn: TurnRecord, payload: bytes) -> bytes:
    return _dump({"kind": "turn", "turn_id": str(turn.turn_id), "parent_turn_id": str(turn.parent_turn_id),
                  "depth": turn.depth, "context_id": str(turn.context_id), "created_at_ms": turn.created_at_ms,
                  "type_id": turn.type_id, "type_version": turn.type_version, "content_hash": turn.content_hash.hex(),
                  "payload": base64.b64encode(payload).decode()})


def replaced_line(context_id: int, entry: HeadEntry) -> bytes:
    return _dump({"kind": "replaced_head", "context_id": str(context_id), "head_turn_id": str(entry.head_turn_id),
                  "head_depth": entry.head_depth, "replaced_by_turn_id": str(entry.replaced_by_turn_id),
                  "replaced_at_ms": entry.replaced_at_ms})


def key_line(context_id: int, entry: KeyEntry) -> bytes:
    return _dump({"kind": "idempotency_key", "context_id": str(context_id), "key": entry.key,
                  "turn_id": str(entry.turn_id), "created_at_ms": entry.created_at_ms, "request": entry.request.hex()})


def head_line(context: ContextRecord) -> bytes:
    return _dump({"kind": "head", "context_id": str(context.context_id), "head_turn_id": str(context.head_turn_id),
                  "head_depth": context.head_depth, "last_activity_ms": context.last_activity_ms})


def end_line(bundles: int, contexts: int, turns: int) -> bytes:
    return _dump({"kind": "end", "bundles": bundles, "contexts": contexts, "turns": turns})


class Reader:
    """Turns the lines of an export into records, checking each field; raises :class:`BadExport`."""

    def __init__(self, digest: Callable[[bytes], bytes]) -> None:
        self._digest = digest
        self.line = 0
        self._record: dict[str, Any] = {}

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The next line as a JSON object (its ``kind`` checked by the caller)."""
        self.line += 1
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self.bad("not a JSON object (the file is corrupted or truncated)") from exc
        if not isinstance(record, dict):
            raise self.bad("not a JSON object")
        self._record = record
        return record

    def bad(self, message: str, **details: Any) -> BadExport:
        return BadExport(self.line, message, details)

    def header(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("format") != FORMAT:
            raise self.bad(f"not a cxdb export: the first line has no \"format\": \"{FORMAT}\"")
        version = record.get("version")
        if version != VERSION:
            raise self.bad(f"unknown format version {version!r}: this cxdb reads version {VERSION}",
                           version=version, supported=VERSION)
        source = record.get("source")
        store_id = source.get("store_id") if isinstance(source, dict) else None
        if not isinstance(store_id, str) or not _STORE_ID.fullmatch(store_id):
            raise self.bad("the header names no source store_id (1 to 64 letters, digits, - or _)")
        return record

    def field(self, name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        value = self._record.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.bad(f"field {name!r} is missing or of the wrong type", field=name)
        return value

    def number(self, name: str) -> int:
        value = self.field(name, int)
        if value < 0 or value >= 1 << 63:
            raise self.bad(f"field {name!r} is out of range", field=name)
        return int(value)

    def ident(self, name: str, optional: bool = False) -> int:
        value = self._record.get(name)
        if value is None and optional:
            return 0
        try:
            if not isinstance(value, str):
                raise ValueError("not a string")
            return parse_u64(value)
        except ValueError as exc:
            raise self.bad(f"field {name!r} is not an id (a decimal string)", field=name) from exc

    def hexed(self, name: str, size: int | None = None) -> bytes:
        try:
            value = bytes.fromhex(self.field(name, str))
        except ValueError as exc:
            raise self.bad(f"field {name!r} is not hex", field=name) from exc
        if size is not None and len(value) != size:
            raise self.bad(f"field {name!r} is not {size} bytes", field=name)
        return value

    def bundle(self) -> tuple[str, int, Any]:
        return self.field("bundle_id", str), self.number("published_at_ms"), self.field("body", dict)

    def context(self) -> ContextRecord:
        tag = self.field("client_tag", str, optional=True)
        provenance = self.field("provenance", dict, optional=True)
        parent = self.ident("parent_context_id", optional=True)
        fork = self.ident("fork_turn_id", optional=True)
        lineage = Lineage(ContextId(parent) if parent else None, ContextId(self.ident("root_context_id")),
                          TurnId(fork) if fork else None)
        return ContextRecord(ContextId(self.ident("context_id")), TurnId(0), 0, self.number("created_at_ms"), 0,
                             tag, provenance, lineage)

    def turn(self) -> tuple[TurnRecord, bytes]:
        try:
            payload = base64.b64decode(self.field("payload", str), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.bad("field 'payload' is not base64", field="payload") from exc
        digest = self.hexed("content_hash", 32)
        if self._digest(payload) != digest:
            raise self.bad("the payload's bytes do not match its content_hash", field="content_hash")
        record = TurnRecord(TurnId(self.ident("turn_id")), TurnId(self.ident("parent_turn_id")), self.number("depth"),
                            ContextId(self.ident("context_id")), self.field("type_id", str),
                            self.number("type_version"), 1, 0, len(payload), BlobHash(digest),
                            self.number("created_at_ms"), TurnId(0))
        if not record.turn_id:
            raise self.bad("turn id 0 names no turn", field="turn_id")
        return record, payload

    def replaced(self) -> HeadEntry:
        return HeadEntry(self.ident("head_turn_id"), self.number("head_depth"), self.ident("replaced_by_turn_id"),
                         self.number("replaced_at_ms"))

    def key(self) -> KeyEntry:
        return KeyEntry(self.field("key", str), self.ident("turn_id"), self.number("created_at_ms"),
                        self.hexed("request"))

    def head(self) -> tuple[int, int, int]:
        return self.ident("head_turn_id"), self.number("head_depth"), self.number("last_activity_ms")

    def end(self) -> tuple[int, int, int]:
        return self.number("bundles"), self.number("contexts"), self.number("turns")
