"""``string_limit``: long strings cut at a character boundary, and the JSON paths of those cut. Pure.

Strings are cut in the decoded payload, before rendering, so only what the payload holds as a string
is cut: bytes (rendered as base64 or hex text) and the labels and times rendering makes never are. A
cut string is a :class:`Cut`, a ``str`` that renders unchanged, so the paths of the cut ones are
found in the rendered value by its field names, as a client sees them.
"""

from __future__ import annotations

from typing import Any

from .render import MAX_DEPTH

__all__ = ["MAX_STRING_LIMIT", "Cut", "cut_strings", "cut_paths"]

MAX_STRING_LIMIT = 65_536
_MAX_BYTES_PER_CHAR = 4


class Cut(str):
    """A string that was cut to the limit."""

    __slots__ = ()


def _cut(text: str, limit: int) -> str:
    if len(text) * _MAX_BYTES_PER_CHAR <= limit:
        return text
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    # A partial character at the end decodes to nothing: the cut ends at the last whole one.
    return Cut(encoded[:limit].decode("utf-8", "ignore"))


def cut_strings(value: Any, limit: int, depth: int = 0) -> Any:
    """``value`` (decoded msgpack) with every string value longer than ``limit`` UTF-8 bytes cut.
    Below ``MAX_DEPTH`` nothing is cut: rendering refuses such a payload anyway."""
    if isinstance(value, str):
        return _cut(value, limit)
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [cut_strings(item, limit, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: cut_strings(item, limit, depth + 1) for key, item in value.items()}
    return value


def cut_paths(rendered: Any) -> list[str]:
    """The JSON paths of the cut strings in a rendered value, in document order: ``text``,
    ``tool_calls[0].arguments``."""
    found: list[str] = []
    _walk(rendered, "", found)
    return found


def _walk(value: Any, path: str, found: list[str]) -> None:
    if isinstance(value, Cut):
        found.append(path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}" if path else str(key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", found)
