"""Parsing and validating requests: query parameters, path ids and JSON bodies.

A bad query parameter or path id is a BadRequest (400); a body that is not
JSON is a BadRequest too; a body of the wrong shape, a field of the wrong type
or JSON nested too deeply is Unprocessable (422), naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest, CxdbError, Unprocessable
from ..model import U64_MAX, parse_u64
from .keys import SERVICE, SETTINGS

__all__ = [
    "OFFLOAD_BYTES",
    "body_bytes",
    "body_u64",
    "flag",
    "choice",
    "optional_str",
    "parse_json",
    "path_id",
    "query_int",
    "query_u64",
    "read_json",
    "read_object",
    "u64_value",
]

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")
# Every ASCII digit maps to "0" and every other byte to " ", so a run of 19 digits becomes a run of
# 19 zeros: one C-speed pass, where a regex for the run costs eight times as much on a typical body.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_NINETEEN_ZEROS = b"0" * 19
_I64_MIN = -(1 << 63)


def _u64(text: str, name: str) -> int:
    try:
        return parse_u64(text)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a u64 decimal string", {"parameter": name, "value": text}) from exc


def u64_value(text: str, name: str) -> int:
    """A u64 given as decimal text in parameter or header ``name``; BadRequest naming it otherwise."""
    return _u64(text, name)


def path_id(request: web.Request, name: str) -> int:
    return _u64(request.match_info[name], name)


def query_u64(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    return None if text is None or text == "" else _u64(text, name)


def query_int(query: Mapping[str, str], name: str, default: int, cap: int) -> int:
    """A non-negative integer parameter; values over ``cap`` are capped."""
    text = query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise BadRequest(f"{name} must be a non-negative integer", {"parameter": name, "value": text})
    return min(int(text), cap)


def flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    text = query.get(name)
    if text is None:
        return default
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(f"{name} must be one of 1, true, yes, 0, false, no", {"parameter": name, "value": text})


def choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``; the first is the default."""
    text = query.get(name)
    if text is None:
        return allowed[0]
    if text not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}",
                         {"parameter": name, "value": text, "allowed": list(allowed)})
    return text


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a container nests deeper than ``limit``: one level at a time, containers only, so the
    scalars (nearly every value) cost one type check each at C speed."""
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        level = [child for item in level for child in (item.values() if type(item) is dict else item)
                 if type(child) is dict or type(child) is list]
        if not level:
            return False
    return bool(level)


def _has_out_of_range_int(raw: bytes) -> bool:
    """orjson reads integer literals past 64 bits as floats; the exact parser tells them apart."""
    stack = [json.loads(raw)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and not _I64_MIN <= item <= U64_MAX:
            return True
    return False


OFFLOAD_BYTES = 256 * 1024
"""Bodies larger than this are parsed, checked and encoded on the service's worker thread, so the
event loop keeps answering other requests meanwhile."""
DENSE_ITEMS = 65_536
BYTES_PER_ITEM = 4
"""Past the first ``DENSE_ITEMS`` values, a body holds at most one value per ``BYTES_PER_ITEM`` bytes.
Parsed, a value costs 30 to 180 bytes (an int, a list, a dict), so this keeps a body's parsed form
within a small multiple of its size, where ``[[],[],...]`` would take some 25 bytes per byte."""
_BODY_BYTES = web.RequestKey("body_bytes", int)


def body_bytes(request: web.Request) -> int:
    """The size of the body :func:`read_json` read (0 before it has)."""
    size: int = request.get(_BODY_BYTES, 0)
    return size


def _too_many_items(raw: bytes, limit: int) -> bool:
    """Whether the body holds more than ``limit`` JSON values, told before parsing it.

    A container of k > 0 values has k - 1 commas, so the values number at most one (the body) plus
    the commas plus the containers that are not empty. Commas and brackets inside strings only
    raise that bound, so when it is over the limit it is taken again outside the strings.
    """
    return _bound(raw, 0, len(raw)) > limit and _bound_outside_strings(raw) > limit


def _bound(raw: bytes, start: int, end: int) -> int:
    containers = (raw.count(b"[", start, end) + raw.count(b"{", start, end)
                  - raw.count(b"[]", start, end) - raw.count(b"{}", start, end))
    return 1 + raw.count(b",", start, end) + containers


def _bound_outside_strings(raw: bytes) -> int:
    """:func:`_bound` of the bytes between strings. One short C call per string (a single regex over
    a body of megabytes would hold the GIL for tens of milliseconds)."""
    total = 0
    pos = 0
    while True:
        opening = raw.find(b'"', pos)
        if opening < 0:
            return total + _bound(raw, pos, len(raw))
        total += _bound(raw, pos, opening) - 1
        closing = opening
        while True:
            closing = raw.find(b'"', closing + 1)
            if closing < 0:  # unterminated: the parser refuses it
                return total + 1
            escapes = closing - 1
            while raw[escapes] == 0x5C:  # backslash
                escapes -= 1
            if (closing - 1 - escapes) % 2 == 0:
                break
        pos = closing + 1


def parse_json(raw: bytes, max_depth: int, max_items: int, malformed: type[CxdbError] = BadRequest) -> Any:
    """Parse and check a JSON body; pure CPU, safe to run on a worker thread.

    Limits come first, from byte scans: a body of millions of tiny values (``[[],[],...]``) would
    otherwise take tens of bytes of memory per byte of body to parse.
    """
    limit = min(max_items, DENSE_ITEMS + len(raw) // BYTES_PER_ITEM)
    # Every value takes at least one byte of its own, so a body no longer than the limit is within it.
    if len(raw) > limit and _too_many_items(raw, limit):
        raise Unprocessable(f"The body holds more than {limit} JSON values (at most {max_items}, and one per "
                            f"{BYTES_PER_ITEM} bytes past the first {DENSE_ITEMS})",
                            {"max_items": limit})
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise Unprocessable("JSON nests too deeply", {"max_depth": max_depth}) from exc
        if "infinity" in str(exc) or "out of range" in str(exc):
            # Well-formed JSON whose number no double holds (5,000 digits, 1e400): the range error
            # every integer past 64 bits gets, not a syntax error.
            raise _out_of_range() from exc
        raise malformed("Malformed JSON body", {"reason": str(exc)}) from exc
    # Byte scans run at C speed and rule out the slow checks for nearly every body:
    # nesting cannot exceed the number of brackets, and an integer past 64 bits has 19+ digits.
    if raw.count(b"{") + raw.count(b"[") > max_depth and _too_deep(value, max_depth):
        raise Unprocessable("JSON nests too deeply", {"max_depth": max_depth})
    if _NINETEEN_ZEROS in raw.translate(_DIGITS_AS_ZEROS) and _has_out_of_range_int(raw):
        raise _out_of_range()
    return value


def _out_of_range() -> Unprocessable:
    return Unprocessable("A number in the body is outside the 64-bit range",
                         {"min": str(_I64_MIN), "max": str(U64_MAX)})


async def read_json(request: web.Request, malformed: type[CxdbError] = BadRequest, empty: Any = None) -> Any:
    """The body as JSON; an empty body is ``empty``. A large body is parsed off the event loop."""
    raw = await request.read()
    request[_BODY_BYTES] = len(raw)
    if not raw or raw.isspace():
        return empty
    settings = request.app[SETTINGS]
    if len(raw) <= OFFLOAD_BYTES:
        return parse_json(raw, settings.max_json_depth, settings.max_json_items, malformed)
    return await request.app[SERVICE].offload(parse_json, raw, settings.max_json_depth, settings.max_json_items,
                                              malformed)


async def read_object(request: web.Request, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; Unprocessable when it is another JSON value."""
    value = await read_json(request, empty={} if allow_empty else None)
    if not isinstance(value, dict):
        raise Unprocessable("The request body must be a JSON object", {"field": "body"})
    return value


def body_u64(body: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    """An id field given as a decimal string or an integer."""
    value = body.get(name)
    if value is None:
        return default
    try:
        return parse_u64(value)
    except ValueError as exc:
        raise Unprocessable(f"{name} must be a u64 as a decimal string or integer", {"field": name}) from exc


def optional_str(body: Mapping[str, Any], name: str, max_bytes: int = 4096) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value.encode()) > max_bytes:
        raise Unprocessable(f"{name} must be a string of at most {max_bytes} bytes", {"field": name})
    return value
