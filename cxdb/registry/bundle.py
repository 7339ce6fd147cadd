"""Checking the shape of a registry bundle.

Pure: a parsed JSON value in, a :class:`ParsedBundle` out, or Unprocessable
naming the type, version, tag and field key that are wrong. References to
other types and enums are checked later, against the whole catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..descriptor import COMPOSITES, INT_RANGES, SCALARS, SEMANTICS, TIME_SEMANTICS
from ..errors import Unprocessable

__all__ = ["FIELD_KEYS", "MAX_ID_BYTES", "ParsedBundle", "ParsedField", "canonical", "parse_bundle"]

MAX_ID_BYTES = 400
_U32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class ParsedField:
    """A field as written in the bundle, shape-checked; references not yet resolved."""

    tag: int
    name: str
    kind: str
    optional: bool
    semantic: str | None
    enum_id: str | None
    items: str | None
    nested: str | None
    key_type: str
    value_type: str | None


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    """A shape-checked bundle."""

    bundle_id: str
    versions: dict[tuple[str, int], dict[int, ParsedField]]
    raw_versions: dict[tuple[str, int], bytes]
    enums: dict[str, dict[int, str]]
    body: bytes


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace. Two values are JSON-equal iff these bytes are."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _fail(message: str, **where: Any) -> Unprocessable:
    return Unprocessable(message, {key: value for key, value in where.items() if value is not None})


FIELD_KEYS = frozenset({"name", "type", "optional", "semantic", "enum", "items", "nested", "key_type", "value_type"})
"""Every key a field descriptor may have: any other is a typo (``optinal``) and refused, never ignored."""


def _number_key(text: Any, what: str, low: int, high: int, **where: Any) -> int:
    digits = text[1:] if isinstance(text, str) and text.startswith("-") else text
    if (not isinstance(digits, str) or not digits.isdigit() or not digits.isascii() or len(text) > 21
            or (len(digits) > 1 and digits[0] == "0") or text == "-0"):
        # One spelling per number: "01" and "1" would otherwise name the same version, tag or value.
        raise _fail(f"{what} must be a canonical decimal string", **where,
                    key=text[:40] if isinstance(text, str) else text)
    value = int(text)
    if not low <= value <= high:
        raise _fail(f"{what} out of range", **where, key=text)
    return value


def _identifier(value: Any, what: str, **where: Any) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_ID_BYTES:
        raise _fail(f"{what} must be a non-empty string of at most {MAX_ID_BYTES} bytes", **where)
    return value


def parse_bundle(value: Any, strict: bool = True) -> ParsedBundle:
    """Check a bundle's shape; Unprocessable says exactly where it is wrong.

    ``strict=False`` reads bundles already stored: rules added after they were
    published (unknown field keys, numeric enum labels) must not make a store unreadable.
    """
    if not isinstance(value, dict):
        raise _fail("a bundle must be a JSON object")
    version = value.get("registry_version")
    if type(version) is not int or version != 1:  # neither true nor 1.0
        raise _fail("registry_version must be 1", field="registry_version")
    bundle_id = _identifier(value.get("bundle_id"), "bundle_id", field="bundle_id")
    types = value.get("types", {})
    enums_in = value.get("enums", {})
    if not isinstance(types, dict):
        raise _fail("types must be an object", field="types")
    if not isinstance(enums_in, dict):
        raise _fail("enums must be an object", field="enums")

    enums: dict[str, dict[int, str]] = {}
    for enum_id, mapping in enums_in.items():
        _identifier(enum_id, "an enum id", enum_id=enum_id)
        if not isinstance(mapping, dict) or not mapping:
            raise _fail("an enum must be a non-empty object of number to label", enum_id=enum_id)
        labels: dict[int, str] = {}
        seen: set[str] = set()
        for number_text, label in mapping.items():
            number = _number_key(number_text, "an enum value", -(1 << 63), (1 << 64) - 1, enum_id=enum_id)
            if not isinstance(label, str) or not label:
                raise _fail("an enum label must be a non-empty string", enum_id=enum_id, key=number_text)
            if strict and label.lstrip("-").isdigit():
                # An append may name an enum value by label or by number: a numeric label is ambiguous.
                raise _fail("an enum label must not be a number", enum_id=enum_id, key=number_text, label=label)
            if label in seen:
                raise _fail("an enum label appears twice", enum_id=enum_id, label=label)
            seen.add(label)
            labels[number] = label
        enums[enum_id] = labels

    versions: dict[tuple[str, int], dict[int, ParsedField]] = {}
    raw_versions: dict[tuple[str, int], bytes] = {}
    for type_id, entry in types.items():
        _identifier(type_id, "a type id", type_id=type_id)
        if not isinstance(entry, dict) or not isinstance(entry.get("versions"), dict) or not entry["versions"]:
            raise _fail("a type needs a non-empty versions object", type_id=type_id)
        for version_text, body in entry["versions"].items():
            number = _number_key(version_text, "a type version", 1, _U32_MAX, type_id=type_id)
            if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
                raise _fail("a type version needs a fields object", type_id=type_id, type_version=number)
            versions[(type_id, number)] = _parse_fields(type_id, number, body["fields"], strict)
            raw_versions[(type_id, number)] = canonical(body)
    return ParsedBundle(bundle_id, versions, raw_versions, enums, canonical(value))


def _parse_fields(type_id: str, version: int, fields: dict[str, Any], strict: bool) -> dict[int, ParsedField]:
    parsed: dict[int, ParsedField] = {}
    names: set[str] = set()
    for tag_text, spec in fields.items():
        tag = _number_key(tag_text, "a field tag", 0, _U32_MAX, type_id=type_id, type_version=version)
        if strict and isinstance(spec, dict):
            unknown = sorted(key for key in spec if key not in FIELD_KEYS)
            if unknown:
                raise _fail(f"unknown key {unknown[0]!r} in a field descriptor", type_id=type_id,
                            type_version=version, tag=tag, key=unknown[0], allowed=sorted(FIELD_KEYS))
        parsed[tag] = field = _parse_field(spec, type_id=type_id, type_version=version, tag=tag)
        if field.name in names:
            raise _fail("a field name appears twice", type_id=type_id, type_version=version, tag=tag,
                        name=field.name)
        names.add(field.name)
    return parsed


def _parse_field(spec: Any, **where: Any) -> ParsedField:
    if not isinstance(spec, dict):
        raise _fail("a field must be an object", **where)
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _fail("a field needs a non-empty name", **where, key="name")
    kind = spec.get("type")
    enum_id = spec.get("enum")
    if kind == "enum":
        kind = "u32"
        if enum_id is None:
            raise _fail("an enum field needs an enum id", **where, key="enum")
    if not isinstance(kind, str) or kind not in SCALARS | COMPOSITES:
        raise _fail(f"unknown field type {kind!r}", **where, key="type")
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        raise _fail("optional must be a boolean", **where, key="optional")
    semantic = spec.get("semantic")
    if semantic is not None and semantic not in SEMANTICS:
        raise _fail(f"unknown semantic {semantic!r}", **where, key="semantic")
    if semantic in TIME_SEMANTICS and kind not in INT_RANGES:
        raise _fail("a time semantic needs an integer field", **where, key="semantic")
    if enum_id is not None:
        _identifier(enum_id, "an enum id", **where, key="enum")
        if kind not in INT_RANGES:
            raise _fail("an enum field must have an integer type", **where, key="enum")
    items = _optional_name(spec, "items", where)
    nested = _optional_name(spec, "nested", where)
    value_type = _optional_name(spec, "value_type", where)
    key_type = spec.get("key_type", "string")
    if key_type != "string" and key_type not in INT_RANGES:
        raise _fail("key_type must be string or an integer type", **where, key="key_type")
    if kind == "array" and items is None:
        raise _fail("an array field needs items", **where, key="items")
    if kind == "nested" and nested is None:
        raise _fail("a nested field needs nested: <type_id>", **where, key="nested")
    return ParsedField(where["tag"], name, kind, optional, semantic, enum_id, items, nested, key_type, value_type)


def _optional_name(spec: dict[str, Any], key: str, where: dict[str, Any]) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(f"{key} must be a type name", **where, key=key)
    return value
