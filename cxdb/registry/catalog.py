"""The catalog: every published type version and enum, and the evolution rules.

Pure and immutable: :meth:`Catalog.with_bundle` returns a new catalog or
raises, and leaves the old one as it was, which is what makes publishing
atomic. The catalog is rebuilt from the stored bundles in publish order.

Rules for a new bundle, besides its shape (:mod:`.bundle`):

- a type version already published must be JSON-equal to the stored one (409);
- a new version may not be lower than the type's latest version (409);
- a tag keeps its type across every version of a type (409);
- an enum already published must map the same numbers to the same labels (409);
- every enum, nested type and item type referred to must exist (422).

A reference to a type (``nested``, ``items``, ``value_type``) is pinned to that
type's latest version when the referring bundle is published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..descriptor import SCALARS, Descriptor, ElementSpec, FieldSpec, TypeRef
from ..errors import Conflict, Unprocessable
from .bundle import ParsedBundle, ParsedField

__all__ = ["Catalog", "TypeSummary"]


@dataclass(frozen=True, slots=True)
class TypeSummary:
    """A type's latest version and the bundle that introduced it."""

    type_id: str
    latest_version: int
    bundle_id: str


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every published type version and enum, as of one registry generation."""

    descriptors: dict[tuple[str, int], Descriptor] = field(default_factory=dict)
    raw_versions: dict[tuple[str, int], bytes] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)
    bundle_ids: tuple[str, ...] = ()

    @classmethod
    def from_bundles(cls, bundles: Iterable[ParsedBundle]) -> Catalog:
        catalog = cls()
        for bundle in bundles:
            catalog = catalog.with_bundle(bundle)
        return catalog

    @property
    def latest_bundle_id(self) -> str | None:
        return self.bundle_ids[-1] if self.bundle_ids else None

    def descriptor(self, type_id: str, version: int) -> Descriptor | None:
        return self.descriptors.get((type_id, version))

    def latest_descriptor(self, type_id: str) -> Descriptor | None:
        version = self.latest.get(type_id)
        return None if version is None else self.descriptors[(type_id, version)]

    def summaries(self) -> list[TypeSummary]:
        """Each type's latest version, sorted by type id."""
        return [TypeSummary(type_id, version, self.descriptors[(type_id, version)].bundle_id)
                for type_id, version in sorted(self.latest.items())]

    def with_bundle(self, bundle: ParsedBundle) -> Catalog:
        """A catalog with ``bundle`` added; Conflict or Unprocessable leave this one unchanged."""
        enums = dict(self.enums)
        for enum_id, labels in bundle.enums.items():
            stored = enums.get(enum_id)
            if stored is not None and stored != labels:
                raise Conflict("enum redefined differently", {"enum_id": enum_id})
            enums[enum_id] = labels

        raw_versions = dict(self.raw_versions)
        latest = dict(self.latest)
        new_keys: list[tuple[str, int]] = []
        for key in sorted(bundle.versions):
            type_id, version = key
            stored_raw = raw_versions.get(key)
            if stored_raw is not None:
                if stored_raw != bundle.raw_versions[key]:
                    raise Conflict("an existing type version was changed",
                                   {"type_id": type_id, "type_version": version})
                continue
            current = latest.get(type_id)
            if current is not None and version < current and (type_id, current) not in bundle.versions:
                raise Conflict("a new type version is lower than the latest one",
                               {"type_id": type_id, "type_version": version, "latest_version": current})
            new_keys.append(key)
            raw_versions[key] = bundle.raw_versions[key]
            latest[type_id] = max(version, current or 0)

        descriptors = dict(self.descriptors)
        for key in new_keys:
            fields = {tag: self._resolve(parsed, key, enums, latest)
                      for tag, parsed in bundle.versions[key].items()}
            descriptors[key] = Descriptor(key[0], key[1], fields, bundle_id=bundle.bundle_id)
        for type_id in sorted({key[0] for key in new_keys}):
            _check_tags(type_id, descriptors)
        return Catalog(descriptors, raw_versions, latest, enums, (*self.bundle_ids, bundle.bundle_id))

    @staticmethod
    def _resolve(parsed: ParsedField, key: tuple[str, int], enums: dict[str, dict[int, str]],
                 latest: dict[str, int]) -> FieldSpec:
        where = {"type_id": key[0], "type_version": key[1], "tag": parsed.tag}

        def ref(type_id: str, what: str) -> TypeRef:
            version = latest.get(type_id)
            if version is None:
                raise Unprocessable(f"{what} names a type that does not exist",
                                    {**where, "key": what, "missing": type_id})
            return TypeRef(type_id, version)

        def element(name: str | None, what: str) -> ElementSpec | None:
            if name is None:
                return None
            if name in SCALARS:
                return ElementSpec(name)
            return ElementSpec("nested", ref(name, what))

        enum = None
        if parsed.enum_id is not None:
            enum = enums.get(parsed.enum_id)
            if enum is None:
                raise Unprocessable("enum names an enum that does not exist",
                                    {**where, "key": "enum", "missing": parsed.enum_id})
        items = element(parsed.items, "items")
        if parsed.kind == "map":
            items = element(parsed.value_type, "value_type") or ElementSpec(None)
        nested = ref(parsed.nested, "nested") if parsed.kind == "nested" and parsed.nested else None
        return FieldSpec(parsed.tag, parsed.name, parsed.kind, parsed.optional, parsed.semantic,
                         parsed.enum_id, enum, items, parsed.key_type, nested)


def _check_tags(type_id: str, descriptors: dict[tuple[str, int], Descriptor]) -> None:
    seen: dict[int, tuple[int, tuple[object, ...]]] = {}
    for (other_id, version), descriptor in sorted(descriptors.items()):
        if other_id != type_id:
            continue
        for tag, spec in descriptor.fields.items():
            earlier = seen.get(tag)
            if earlier is not None and earlier[1] != spec.signature:
                raise Conflict("a tag was reused with a different type",
                               {"type_id": type_id, "tag": tag, "type_version": version,
                                "earlier_version": earlier[0]})
            seen.setdefault(tag, (version, spec.signature))
