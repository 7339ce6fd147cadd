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

from collections import ChainMap
from collections.abc import Iterable, Mapping
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


Signature = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every published type version and enum, as of one registry generation.

    ``tags`` holds, per type, each tag's signature and the first version that used it, so a new
    version is checked against its own type's tags alone: publishing is linear in the bundle.
    """

    descriptors: dict[tuple[str, int], Descriptor] = field(default_factory=dict)
    raw_versions: dict[tuple[str, int], bytes] = field(default_factory=dict)
    latest: dict[str, int] = field(default_factory=dict)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)
    bundle_ids: tuple[str, ...] = ()
    tags: dict[str, dict[int, tuple[int, Signature]]] = field(default_factory=dict)

    @classmethod
    def from_bundles(cls, bundles: Iterable[ParsedBundle]) -> Catalog:
        """The catalog of ``bundles`` in publish order, built in one pass (no copy per bundle)."""
        return cls().with_bundles(bundles)

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
        return self.with_bundles((bundle,))

    def with_bundles(self, bundles: Iterable[ParsedBundle]) -> Catalog:
        """A catalog with ``bundles`` added in order; this one is never changed.

        The maps are copied once for the whole run, so loading N bundles costs what they hold, and a
        bundle that is rejected raises before it changes anything.
        """
        work = _Work(dict(self.descriptors), dict(self.raw_versions), dict(self.latest), dict(self.enums),
                     list(self.bundle_ids), dict(self.tags), set())
        for bundle in bundles:
            work.add(bundle)
        return Catalog(work.descriptors, work.raw_versions, work.latest, work.enums, tuple(work.bundle_ids),
                       work.tags)


@dataclass(slots=True)
class _Work:
    """A catalog's maps while bundles are added to them. ``owned`` names the per-type tag maps already
    copied for this run (the others are still shared with the catalog the run started from)."""

    descriptors: dict[tuple[str, int], Descriptor]
    raw_versions: dict[tuple[str, int], bytes]
    latest: dict[str, int]
    enums: dict[str, dict[int, str]]
    bundle_ids: list[str]
    tags: dict[str, dict[int, tuple[int, Signature]]]
    owned: set[str]

    def add(self, bundle: ParsedBundle) -> None:
        """Check ``bundle`` against everything so far, then add it; on a rejection nothing has changed."""
        for enum_id, labels in bundle.enums.items():
            stored = self.enums.get(enum_id)
            if stored is not None and stored != labels:
                raise Conflict("enum redefined differently", {"enum_id": enum_id})
        enums = ChainMap(bundle.enums, self.enums)

        latest: dict[str, int] = {}
        new_keys: list[tuple[str, int]] = []
        for key in sorted(bundle.versions):
            type_id, version = key
            stored_raw = self.raw_versions.get(key)
            if stored_raw is not None:
                if stored_raw != bundle.raw_versions[key]:
                    raise Conflict("an existing type version was changed",
                                   {"type_id": type_id, "type_version": version})
                continue
            current = latest.get(type_id, self.latest.get(type_id))
            if current is not None and version < current and (type_id, current) not in bundle.versions:
                raise Conflict("a new type version is lower than the latest one",
                               {"type_id": type_id, "type_version": version, "latest_version": current})
            new_keys.append(key)
            latest[type_id] = max(version, current or 0)
        merged_latest = ChainMap(latest, self.latest)

        descriptors: dict[tuple[str, int], Descriptor] = {}
        new_tags: dict[str, dict[int, tuple[int, Signature]]] = {}
        for key in new_keys:  # sorted: a type's versions in ascending order
            type_id, version = key
            fields = {tag: _resolve(parsed, key, enums, merged_latest)
                      for tag, parsed in bundle.versions[key].items()}
            descriptors[key] = Descriptor(type_id, version, fields, bundle_id=bundle.bundle_id)
            seen = self.tags.get(type_id, {})
            added = new_tags.setdefault(type_id, {})
            for tag, spec in fields.items():
                earlier = added.get(tag) or seen.get(tag)
                if earlier is not None and earlier[1] != spec.signature:
                    raise Conflict("a tag was reused with a different type",
                                   {"type_id": type_id, "tag": tag, "type_version": max(version, earlier[0]),
                                    "earlier_version": min(version, earlier[0])})
                if earlier is None or version < earlier[0]:
                    added[tag] = (version, spec.signature)

        self.enums.update(bundle.enums)
        self.latest.update(latest)
        self.descriptors.update(descriptors)
        for key in new_keys:
            self.raw_versions[key] = bundle.raw_versions[key]
        for type_id, added in new_tags.items():
            if type_id not in self.owned:
                self.tags[type_id] = dict(self.tags.get(type_id, {}))
                self.owned.add(type_id)
            self.tags[type_id].update(added)
        self.bundle_ids.append(bundle.bundle_id)

def _resolve(parsed: ParsedField, key: tuple[str, int], enums: Mapping[str, dict[int, str]],
             latest: Mapping[str, int]) -> FieldSpec:
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


