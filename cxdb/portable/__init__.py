"""Portable stores: export a store (or some contexts) as one documented stream, import it into any
store, copy between backends (docs/export-format.md).

Service level: it reads and writes through the :class:`~cxdb.storage.Backend` interface (and
publishes bundles through the service, which checks them), so every backend exports and imports
alike.
"""

from __future__ import annotations

from .copy import verify
from .exporter import Selection, export
from .format import FORMAT, VERSION, BadExport
from .importer import ImportReport, import_lines
from .stream import Compressor, file_chunks, lines

__all__ = ["FORMAT", "VERSION", "BadExport", "Compressor", "ImportReport", "Selection", "export", "file_chunks",
           "import_lines", "lines", "verify"]
