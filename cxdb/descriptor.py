"""Type descriptors: the validated, normalized form of a bundle's field tables.

Pure: no I/O. A descriptor maps numeric field tags to fields; a field has a
kind (a scalar, ``array``, ``map`` or ``nested``) and, for composites, an
element spec naming a scalar kind or another type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "INT_RANGES",
    "SCALARS",
    "SEMANTICS",
    "Descriptor",
    "ElementSpec",
    "FieldSpec",
    "TypeRef",
]

INT_RANGES: dict[str, tuple[int, int]] = {
    "i8": (-(1 << 7), (1 << 7) - 1),
    "i16": (-(1 << 15), (1 << 15) - 1),
    "i32": (-(1 << 31), (1 << 31) - 1),
    "i64": (-(1 << 63), (1 << 63) - 1),
    "u8": (0, (1 << 8) - 1),
    "u16": (0, (1 << 16) - 1),
    "u32": (0, (1 << 32) - 1),
    "u64": (0, (1 << 64) - 1),
}
WIDE_INTS = frozenset({"i64", "u64"})
FLOATS = frozenset({"f32", "f64"})
SCALARS = frozenset({"bool", "string", "bytes", *INT_RANGES, *FLOATS})
COMPOSITES = frozenset({"array", "map", "nested"})
SEMANTICS = frozenset({"unix_ms", "unix_sec", "duration_ms", "url", "markdown"})
TIME_SEMANTICS = frozenset({"unix_ms", "unix_sec"})


@dataclass(frozen=True, slots=True)
class TypeRef:
    """A reference to one version of a registered type."""

    type_id: str
    version: int


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """What an array item or map value holds: a scalar kind, a type, or anything (``kind=None``)."""

    kind: str | None
    ref: TypeRef | None = None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a descriptor."""

    tag: int
    name: str
    kind: str
    optional: bool = False
    semantic: str | None = None
    enum_id: str | None = None
    enum: dict[int, str] | None = None
    items: ElementSpec | None = None
    key_kind: str = "string"
    ref: TypeRef | None = None
    labels: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """An enum's numbers by label (the first number when labels repeat): what encoding looks up."""

    def __post_init__(self) -> None:
        for number, label in (self.enum or {}).items():
            self.labels.setdefault(label, number)

    @property
    def signature(self) -> tuple[Any, ...]:
        """What must stay the same when a tag appears in several versions of a type."""
        items = (self.items.kind, self.items.ref.type_id if self.items.ref else None) if self.items else None
        return (self.kind, items, self.ref.type_id if self.ref else None, self.enum_id, self.key_kind)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One version of a type: its fields by tag and by name."""

    type_id: str
    version: int
    fields: dict[int, FieldSpec]
    by_name: dict[str, FieldSpec] = field(default_factory=dict)
    bundle_id: str = ""
    ordered: tuple[FieldSpec, ...] = field(default=(), compare=False, repr=False)
    """The fields in tag order: what an encoded value is written in."""

    def __post_init__(self) -> None:
        if not self.by_name:
            self.by_name.update({spec.name: spec for spec in self.fields.values()})
        if not self.ordered:
            object.__setattr__(self, "ordered", tuple(spec for _, spec in sorted(self.fields.items())))

    @property
    def ref(self) -> TypeRef:
        return TypeRef(self.type_id, self.version)
