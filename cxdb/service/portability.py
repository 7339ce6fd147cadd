"""Export and import as service operations (:mod:`cxdb.portable` does the work)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .. import portable

if TYPE_CHECKING:
    from .core import Service

__all__ = ["Portability"]


class Portability:
    """A service's exports and imports."""

    def __init__(self, service: Service, clock: Callable[[], float] = time.time) -> None:
        self._service = service
        self._clock = clock

    def export_lines(self, selection: portable.Selection) -> AsyncIterator[bytes]:
        """The lines of an export of ``selection``; a context named that does not exist fails as
        NotFound before the first line."""
        return portable.export(self._service.store, selection, int(self._clock() * 1000))

    async def import_chunks(self, chunks: AsyncIterator[bytes], preserve: bool | None = None,
                            progress: Callable[[int], object] | None = None) -> portable.ImportReport:
        """Import an export read as chunks of bytes (plain or zstd): its report, or BadExport naming the
        line that stopped it (the contexts before it imported)."""
        try:
            return await portable.import_lines(self._service, portable.lines(chunks), preserve, progress)
        finally:
            self._service.changes.poke()  # live streams learn of the contexts imported

    async def import_json(self, chunks: AsyncIterator[bytes], preserve: bool | None = None) -> dict[str, Any]:
        return (await self.import_chunks(chunks, preserve)).as_json()
