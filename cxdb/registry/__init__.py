"""The type registry: bundle validation and the catalog of type versions. Pure."""

from .bundle import ParsedBundle, canonical, parse_bundle
from .catalog import Catalog, TypeSummary

__all__ = ["Catalog", "ParsedBundle", "TypeSummary", "canonical", "parse_bundle"]
