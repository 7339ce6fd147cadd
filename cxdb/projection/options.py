"""Render options for typed projections, and the values each may take."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHOICES", "RenderOptions"]

CHOICES: dict[str, tuple[str, ...]] = {
    "bytes_render": ("base64", "hex", "len_only"),
    "u64_format": ("string", "number"),
    "enum_render": ("label", "number", "both"),
    "time_render": ("iso", "unix_ms"),
}


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How a projection renders values; hashable, so it can key a cache."""

    bytes_render: str = "base64"
    u64_format: str = "string"
    enum_render: str = "label"
    time_render: str = "iso"
    include_unknown: bool = False
    string_limit: int | None = None
    """Cut string values longer than this many UTF-8 bytes (1 to 65,536); None: whole."""

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if self.string_limit is not None and not 1 <= self.string_limit <= 65_536:
            raise ValueError("string_limit must be 1 to 65536")
