"""One turn's payload projected for the typed view. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..codec import unpack
from ..descriptor import Descriptor
from ..errors import Corrupt
from .encode import Lookup
from .options import RenderOptions
from .render import Mismatch, TooDeep, render_generic, render_typed, tag_of
from .strings import cut_paths, cut_strings

__all__ = ["Projection", "project"]


@dataclass(frozen=True, slots=True)
class Projection:
    """What the typed view shows of one payload."""

    decoded_as: Descriptor | None
    data: Any
    unknown: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    truncated: list[str] | None = None
    """With ``string_limit``: the JSON paths of the strings cut in ``data``."""


def _failed(code: str, message: str) -> Projection:
    return Projection(None, None, None, {"code": code, "message": message})


def project(raw: bytes, descriptor: Descriptor | None, lookup: Lookup, options: RenderOptions) -> Projection:
    """Decode ``raw`` (msgpack) and render it, typed when a descriptor is given and every key is a tag.

    Never raises for bad payloads: a payload that is not valid msgpack, not a
    map, or nested too deeply comes back with ``data=None`` and an ``error``.
    """
    try:
        value = unpack(raw)
    except Corrupt as exc:
        return _failed("UNDECODABLE_PAYLOAD", exc.message)
    if not isinstance(value, dict):
        return _failed("NOT_A_MAP", f"payload is a msgpack {type(value).__name__}, not a map")
    projection = _render(value, descriptor, lookup, options)
    if options.string_limit is None or projection.data is None:
        return projection
    return replace(projection, truncated=cut_paths(projection.data))


def _render(value: dict[Any, Any], descriptor: Descriptor | None, lookup: Lookup,
            options: RenderOptions) -> Projection:
    if options.string_limit is not None:
        value = cut_strings(value, options.string_limit)
    try:
        if descriptor is None or not all(tag_of(key) is not None for key in value):
            # Keys that are not tags mean the payload was not written with a descriptor.
            return Projection(None, render_generic(value, options))
        unknown: dict[str, Any] | None = {} if options.include_unknown else None
        data = render_typed(value, descriptor, lookup, options, unknown)
    except Mismatch as exc:
        assert descriptor is not None  # only typed rendering raises it
        # Stored before its type was registered, or by another writer: show what is there, and say why
        # it is not typed, rather than a partial rendering under a type it does not fit.
        error = {"code": "DESCRIPTOR_MISMATCH", "message": f"payload does not fit {descriptor.type_id} "
                 f"v{descriptor.version}: {exc}", "path": exc.path}
        try:
            return Projection(None, render_generic(value, options), None, error)
        except (TooDeep, RecursionError):
            return _failed("TOO_DEEP", "payload nests too deeply to render")
    except (TooDeep, RecursionError):
        return _failed("TOO_DEEP", "payload nests too deeply to render")
    return Projection(descriptor, data, unknown)
