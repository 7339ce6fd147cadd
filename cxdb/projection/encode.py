"""JSON to tagged values: what an append stores when its type has a descriptor.

Pure. Field names become numeric tags, recursively through nested types and
arrays of them; ``bytes`` fields take base64; enum fields take a label or a
number and store the number; i64 and u64 fields take a number or a decimal
string. Anything else that does not fit is Unprocessable, with ``details``
naming the field path (``tool_calls[2].name``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from ..descriptor import FLOATS, INT_RANGES, WIDE_INTS, Descriptor, ElementSpec, FieldSpec, TypeRef
from ..errors import Unprocessable

__all__ = ["Lookup", "encode_typed"]

Lookup = Callable[[TypeRef], "Descriptor | None"]
F32_MAX = 3.4028234663852886e38
"""The largest finite f32: a larger value would be stored as infinity by any reader of the type."""


def _wrong(path: str, message: str, **extra: Any) -> Unprocessable:
    return Unprocessable(f"{path}: {message}", {"field": path, **extra})


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def encode_typed(value: Any, descriptor: Descriptor, lookup: Lookup, path: str = "") -> dict[int, Any]:
    """Encode a JSON object as a map of tag to value, in tag order."""
    if not isinstance(value, dict):
        raise _wrong(path or "data", "must be an object", expected_type=descriptor.type_id)
    out: dict[int, Any] = {}
    for name, item in value.items():
        spec = descriptor.by_name.get(name)
        if spec is None:
            raise _wrong(_join(path, name), "unknown field", type_id=descriptor.type_id,
                         type_version=descriptor.version)
        if item is None:
            continue
        out[spec.tag] = _field(item, spec, lookup, _join(path, name))
    for tag, spec in descriptor.fields.items():
        if not spec.optional and tag not in out:
            raise _wrong(_join(path, spec.name), "required field is missing", type_id=descriptor.type_id)
    return dict(sorted(out.items()))


def _field(value: Any, spec: FieldSpec, lookup: Lookup, path: str) -> Any:
    if spec.enum is not None and isinstance(value, str) and not value.lstrip("-").isdigit():
        for number, label in spec.enum.items():
            if label == value:
                return _int(number, spec.kind, path)
        raise _wrong(path, f"unknown label {value!r} for enum {spec.enum_id}", enum=spec.enum_id)
    if spec.kind == "array":
        if not isinstance(value, list):
            raise _wrong(path, "must be an array")
        assert spec.items is not None
        return [_element(item, spec.items, lookup, f"{path}[{index}]") for index, item in enumerate(value)]
    if spec.kind == "map":
        if not isinstance(value, dict):
            raise _wrong(path, "must be an object")
        element = spec.items or ElementSpec(None)
        out: dict[Any, Any] = {}
        for key, item in value.items():
            normal = _map_key(key, spec.key_kind, path)
            if normal in out:  # "01" and "1" are one integer key: storing both would drop one silently
                raise _wrong(f"{path}.{key}", f"map key collides with another key that is also {normal}",
                             key=key)
            out[normal] = _element(item, element, lookup, f"{path}.{key}")
        return out
    if spec.kind == "nested":
        assert spec.ref is not None
        return _nested(value, spec.ref, lookup, path)
    return _scalar(value, spec.kind, path)


def _element(value: Any, element: ElementSpec, lookup: Lookup, path: str) -> Any:
    if element.kind is None:
        return value
    if element.ref is not None:
        return _nested(value, element.ref, lookup, path)
    return _scalar(value, element.kind, path)


def _nested(value: Any, ref: TypeRef, lookup: Lookup, path: str) -> Any:
    descriptor = lookup(ref)
    if descriptor is None:
        raise _wrong(path, f"type {ref.type_id} v{ref.version} is not registered")
    return encode_typed(value, descriptor, lookup, path)


def _map_key(key: str, kind: str, path: str) -> Any:
    if kind == "string":
        return key
    return _int(key, kind, f"{path}.{key}", accept_string=True)


def _scalar(value: Any, kind: str, path: str) -> Any:
    if kind in INT_RANGES:
        return _int(value, kind, path, accept_string=kind in WIDE_INTS)
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong(path, "must be a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _wrong(path, "must be a boolean")
        return value
    if kind in FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(path, "must be a number")
        if kind == "f32" and abs(value) > F32_MAX:
            raise _wrong(path, "out of range for f32", min=-F32_MAX, max=F32_MAX)
        return float(value)
    if kind == "bytes":
        if not isinstance(value, str):
            raise _wrong(path, "must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _wrong(path, "is not valid base64") from exc
    raise _wrong(path, f"unsupported field type {kind}")


def _int(value: Any, kind: str, path: str, accept_string: bool = False) -> int:
    if isinstance(value, str) and accept_string:
        text = value[1:] if value.startswith("-") else value
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise _wrong(path, f"must be a {kind} number or decimal string")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(path, f"must be an integer ({kind})")
    low, high = INT_RANGES[kind]
    if not low <= value <= high:
        raise _wrong(path, f"out of range for {kind}", min=str(low), max=str(high))
    return value
