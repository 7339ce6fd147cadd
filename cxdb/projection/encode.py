"""JSON to tagged values: what an append stores when its type has a descriptor.

Pure. Field names become numeric tags, recursively through nested types and
arrays of them; ``bytes`` fields take base64; enum fields take a label or a
number and store the number; i64 and u64 fields take a number or a decimal
string. Anything else that does not fit is Unprocessable, with ``details``
naming the field path (``tool_calls[2].name``).

Every append runs this for every field, so a value that fits costs no path: a
misfit raises :class:`_Misfit`, and each level it unwinds through adds its step.
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


class _Misfit(Exception):
    """A value that does not fit; ``steps`` (innermost first) are added as it unwinds to the top."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.steps: list[str] = []

    def at(self, step: str) -> _Misfit:
        self.steps.append(step)
        return self


def encode_typed(value: Any, descriptor: Descriptor, lookup: Lookup) -> dict[int, Any]:
    """Encode a JSON object as a map of tag to value, in tag order."""
    try:
        return _object(value, descriptor, lookup)
    except _Misfit as misfit:
        path = "".join(reversed(misfit.steps)).removeprefix(".") or "data"
        raise Unprocessable(f"{path}: {misfit.message}", {"field": path, **misfit.extra}) from None


def _object(value: Any, descriptor: Descriptor, lookup: Lookup) -> dict[int, Any]:
    if not isinstance(value, dict):
        raise _Misfit("must be an object", expected_type=descriptor.type_id)
    by_name = descriptor.by_name
    if not value.keys() <= by_name.keys():
        name = next(name for name in value if name not in by_name)
        raise _Misfit("unknown field", type_id=descriptor.type_id, type_version=descriptor.version).at("." + name)
    out: dict[int, Any] = {}
    for spec in descriptor.ordered:
        item = value.get(spec.name)
        if item is None:
            if not spec.optional:
                raise _Misfit("required field is missing", type_id=descriptor.type_id).at("." + spec.name)
        elif type(item) is str and spec.kind == "string":  # the common cases first, in line
            out[spec.tag] = item
        elif type(item) is int and spec.kind in INT_RANGES and \
                INT_RANGES[spec.kind][0] <= item <= INT_RANGES[spec.kind][1]:
            out[spec.tag] = item
        else:
            try:
                out[spec.tag] = _field(item, spec, lookup)
            except _Misfit as misfit:
                raise misfit.at("." + spec.name) from None
    return out


def _field(value: Any, spec: FieldSpec, lookup: Lookup) -> Any:
    if spec.enum is not None and isinstance(value, str) and not value.lstrip("-").isdigit():
        number = spec.labels.get(value)
        if number is not None:
            return _int(number, spec.kind)
        raise _Misfit(f"unknown label {value!r} for enum {spec.enum_id}", enum=spec.enum_id)
    if spec.kind == "array":
        if not isinstance(value, list):
            raise _Misfit("must be an array")
        assert spec.items is not None
        element = spec.items
        out: list[Any] = []
        for index, item in enumerate(value):
            try:
                out.append(_element(item, element, lookup))
            except _Misfit as misfit:
                raise misfit.at(f"[{index}]") from None
        return out
    if spec.kind == "map":
        if not isinstance(value, dict):
            raise _Misfit("must be an object")
        element = spec.items or ElementSpec(None)
        mapped: dict[Any, Any] = {}
        for key, item in value.items():
            try:
                normal = _map_key(key, spec.key_kind)
                if normal in mapped:  # "01" and "1" are one integer key: storing both would drop one silently
                    raise _Misfit(f"map key collides with another key that is also {normal}", key=key)
                mapped[normal] = _element(item, element, lookup)
            except _Misfit as misfit:
                raise misfit.at("." + key) from None
        return mapped
    if spec.kind == "nested":
        assert spec.ref is not None
        return _nested(value, spec.ref, lookup)
    return _scalar(value, spec.kind)


def _element(value: Any, element: ElementSpec, lookup: Lookup) -> Any:
    if element.kind is None:
        return value
    if element.ref is not None:
        return _nested(value, element.ref, lookup)
    return _scalar(value, element.kind)


def _nested(value: Any, ref: TypeRef, lookup: Lookup) -> Any:
    descriptor = lookup(ref)
    if descriptor is None:
        raise _Misfit(f"type {ref.type_id} v{ref.version} is not registered")
    return _object(value, descriptor, lookup)


def _map_key(key: str, kind: str) -> Any:
    if kind == "string":
        return key
    return _int(key, kind, accept_string=True)


def _scalar(value: Any, kind: str) -> Any:
    if kind in INT_RANGES:
        return _int(value, kind, accept_string=kind in WIDE_INTS)
    if kind == "string":
        if not isinstance(value, str):
            raise _Misfit("must be a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _Misfit("must be a boolean")
        return value
    if kind in FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Misfit("must be a number")
        if kind == "f32" and abs(value) > F32_MAX:
            raise _Misfit("out of range for f32", min=-F32_MAX, max=F32_MAX)
        return float(value)
    if kind == "bytes":
        if not isinstance(value, str):
            raise _Misfit("must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Misfit("is not valid base64") from exc
    raise _Misfit(f"unsupported field type {kind}")


def _int(value: Any, kind: str, accept_string: bool = False) -> int:
    if isinstance(value, str) and accept_string:
        text = value[1:] if value.startswith("-") else value
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise _Misfit(f"must be a {kind} number or decimal string")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Misfit(f"must be an integer ({kind})")
    low, high = INT_RANGES[kind]
    if not low <= value <= high:
        raise _Misfit(f"out of range for {kind}", min=str(low), max=str(high))
    return value
