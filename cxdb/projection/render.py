"""Decoded msgpack values to JSON-ready values, typed or generic.

Pure: no I/O, no clock. A value that does not fit its descriptor raises
:class:`Mismatch`, and the caller renders the whole payload generically with an
error: a payload is never shown partly typed under a type it does not fit.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack

from ..descriptor import FLOATS, INT_RANGES, TIME_SEMANTICS, WIDE_INTS, Descriptor, ElementSpec, FieldSpec
from ..model import iso_utc as _iso
from .encode import Lookup
from .options import RenderOptions

__all__ = ["MAX_DEPTH", "Mismatch", "TooDeep", "render_generic", "render_typed", "tag_of"]

JS_SAFE = (1 << 53) - 1
MAX_DEPTH = 200


class TooDeep(ValueError):
    """The value nests deeper than rendering allows."""


class Mismatch(ValueError):
    """A stored value does not fit its descriptor: the payload must not be shown as that type."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path or 'data'}: stored value is not {expected}")
        self.path = path


def render_bytes(value: bytes, options: RenderOptions) -> str:
    if options.bytes_render == "hex":
        return value.hex()
    if options.bytes_render == "len_only":
        return f"<{len(value)} bytes>"
    return base64.b64encode(value).decode()


def _wide(value: int, options: RenderOptions) -> int | str:
    return value if options.u64_format == "number" else str(value)


def render_generic(value: Any, options: RenderOptions, depth: int = 0) -> Any:
    """Render any decoded msgpack value: keys become strings, big integers follow ``u64_format``."""
    if depth > MAX_DEPTH:
        raise TooDeep("value nests too deeply")
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -JS_SAFE <= value <= JS_SAFE else _wide(value, options)
    if isinstance(value, bytes):
        return render_bytes(value, options)
    if isinstance(value, list):
        return [render_generic(item, options, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_key_text(key, options): render_generic(item, options, depth + 1) for key, item in value.items()}
    if isinstance(value, msgpack.Timestamp):
        return _iso(value.to_unix_nano() // 1_000_000)
    if isinstance(value, msgpack.ExtType):
        return {"ext_type": value.code, "data": render_bytes(value.data, options)}
    return str(value)


def _key_text(key: Any, options: RenderOptions) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return render_bytes(key, options)
    if isinstance(key, bool) or key is None:
        return "true" if key is True else "false" if key is False else "null"
    return str(key)


def tag_of(key: Any) -> int | None:
    """A map key as a field tag: an integer, or a decimal string as Go writers produce."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 10:
        return int(key)
    return None


def render_typed(value: dict[Any, Any], descriptor: Descriptor, lookup: Lookup, options: RenderOptions,
                 unknown: dict[str, Any] | None, path: str = "", depth: int = 0) -> dict[str, Any]:
    """Render a tagged map with its descriptor; unknown tags go into ``unknown`` when it is given."""
    if depth > MAX_DEPTH:
        raise TooDeep("value nests too deeply")
    out: dict[str, Any] = {}
    for key, item in value.items():
        tag = tag_of(key)
        spec = descriptor.fields.get(tag) if tag is not None else None
        if spec is None:
            if unknown is not None:
                name = str(tag) if tag is not None else _key_text(key, options)
                unknown[f"{path}.{name}" if path else name] = render_generic(item, options, depth + 1)
            continue
        field_path = f"{path}.{spec.name}" if path else spec.name
        out[spec.name] = _field(item, spec, lookup, options, unknown, field_path, depth + 1)
    return out


def _field(value: Any, spec: FieldSpec, lookup: Lookup, options: RenderOptions,
           unknown: dict[str, Any] | None, path: str, depth: int) -> Any:
    kind = spec.kind
    if kind in INT_RANGES:
        if not _is_int(value):
            raise Mismatch(path, f"an integer ({kind})")
        if spec.enum is not None:
            return _enum(value, spec.enum, options)
        if spec.semantic in TIME_SEMANTICS:
            return _time(value, spec.semantic, kind, options)
        return _wide(value, options) if kind in WIDE_INTS else value
    if kind == "array":
        if not isinstance(value, list) or spec.items is None:
            raise Mismatch(path, "an array")
        return [_element(item, spec.items, lookup, options, unknown, f"{path}[{index}]", depth + 1)
                for index, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise Mismatch(path, "a map")
        element = spec.items or ElementSpec(None)
        return {_key_text(key, options): _element(item, element, lookup, options, unknown, f"{path}.{key}",
                                                  depth + 1)
                for key, item in value.items()}
    if kind == "nested" and spec.ref is not None:
        return _nested(value, spec.ref, lookup, options, unknown, path, depth)
    if _scalar_matches(kind, value):
        return render_bytes(value, options) if kind == "bytes" else value
    raise Mismatch(path, kind)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _element(value: Any, element: ElementSpec, lookup: Lookup, options: RenderOptions,
             unknown: dict[str, Any] | None, path: str, depth: int) -> Any:
    if element.ref is not None:
        return _nested(value, element.ref, lookup, options, unknown, path, depth)
    if element.kind is None:
        return render_generic(value, options, depth)
    if element.kind in INT_RANGES:
        if not _is_int(value):
            raise Mismatch(path, f"an integer ({element.kind})")
        return _wide(value, options) if element.kind in WIDE_INTS else value
    if _scalar_matches(element.kind, value):
        return render_bytes(value, options) if element.kind == "bytes" else value
    raise Mismatch(path, element.kind)


def _nested(value: Any, ref: Any, lookup: Lookup, options: RenderOptions, unknown: dict[str, Any] | None,
            path: str, depth: int) -> Any:
    descriptor = lookup(ref)
    if descriptor is None:  # the registry lacks the referred type: nothing to check the value against
        return render_generic(value, options, depth)
    if not isinstance(value, dict) or not all(tag_of(key) is not None for key in value):
        raise Mismatch(path, f"a {ref.type_id} v{ref.version}")
    return render_typed(value, descriptor, lookup, options, unknown, path, depth + 1)


def _scalar_matches(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "bytes":
        return isinstance(value, bytes)
    if kind in FLOATS:
        return isinstance(value, float | int) and not isinstance(value, bool)
    return False


def _enum(value: int, labels: dict[int, str], options: RenderOptions) -> Any:
    if options.enum_render == "number":
        return value
    label = labels.get(value)
    if options.enum_render == "both":
        return {"label": label, "value": value}
    return label if label is not None else value


def _time(value: int, semantic: str | None, kind: str, options: RenderOptions) -> Any:
    if options.time_render == "unix_ms":
        return value if -JS_SAFE <= value <= JS_SAFE else _wide(value, options)
    millis = value * 1000 if semantic == "unix_sec" else value
    text = _iso(millis)
    if text is None:
        return _wide(value, options) if kind in WIDE_INTS else value
    return text
