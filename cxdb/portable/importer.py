"""Reading an export into a store (docs/export-format.md), in one pass.

Records are checked line by line and written in transactions of many contexts (the writer's group
commit on LMDB, a few statements over arrays on PostgreSQL), each a whole number of contexts: a context
appears with every turn it reaches and its head, or not at all. When a line is bad, the complete
contexts before it are written and the import stops there, naming the line; the store is then
exactly at the last complete context. (One exception: a single context holding more than
:data:`SPILL_BYTES` of payloads is written in several transactions, its turns first; stopped inside
it, those turns stay in the store, where nothing reaches them until the context is imported.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..codec import content_hash
from ..errors import Conflict, Unprocessable
from ..model import ContextId, ContextRecord, Lineage, TurnId
from ..storage import HeadEntry, KeyEntry, Restored, RestoredContext, RestoredTurn
from .format import BadExport, Reader
from .ledger import IdMap

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["FLUSH_BYTES", "SPILL_BYTES", "ImportReport", "import_lines"]

FLUSH_BYTES = 8 * 1024 * 1024
FLUSH_TURNS = 4096
FLUSH_CONTEXTS = 1024
SPILL_BYTES = 64 * 1024 * 1024
"""Payload bytes one context may hold before its turns are written ahead of it."""


@dataclass(slots=True)
class ImportReport:
    """What an import wrote, and what it found in the store already."""

    bundles: int = 0
    bundles_present: int = 0
    written: Restored = field(default_factory=Restored)
    id_map: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def nothing_new(self) -> bool:
        return not self.bundles and not self.written.turns and not self.written.contexts

    def as_json(self) -> dict[str, Any]:
        done = self.written
        return {"source_store_id": self.source, "bundles": self.bundles, "bundles_present": self.bundles_present,
                "contexts": done.contexts, "contexts_present": done.contexts_present, "turns": done.turns,
                "turns_present": done.turns_present, "nothing_new": self.nothing_new, "id_map": self.id_map}

    def summary(self) -> str:
        done = self.written
        if self.nothing_new:
            return (f"nothing new: the store holds every context ({done.contexts_present}), turn "
                    f"({done.turns_present}) and bundle ({self.bundles_present}) of this export already")
        return (f"imported {done.contexts} contexts, {done.turns} turns and {self.bundles} bundles "
                f"({done.contexts_present} contexts, {done.turns_present} turns and {self.bundles_present} bundles "
                "were in the store already)")


@dataclass(slots=True)
class _Pending:
    """Records read and not yet written, with the line of each (to name it if the store refuses it)."""

    turns: list[RestoredTurn] = field(default_factory=list)
    contexts: list[RestoredContext] = field(default_factory=list)
    lines: dict[tuple[str, int], int] = field(default_factory=dict)
    payload_bytes: int = 0
    complete_turns: int = 0
    """How many of ``turns`` belong to complete contexts (or were read before the context being read)."""
    ends: list[int] = field(default_factory=list)
    """For each of ``contexts``, how many of ``turns`` were read up to its head."""


class _Import:
    def __init__(self, service: Service, preserve: bool | None, progress: Callable[[int], object] | None) -> None:
        self.service = service
        self.backend = service.store
        self.preserve = preserve
        self.progress = progress
        self.reader = Reader(content_hash)
        self.report = ImportReport()
        self.pending = _Pending()
        self.ids: IdMap | None = None
        self.group: ContextRecord | None = None
        self.history: list[HeadEntry] = []
        self.keys: list[KeyEntry] = []
        self.seen = [0, 0, 0]  # bundles, contexts, turns
        self.refused = False  # the store refused a write: nothing more is tried

    async def run(self, lines: AsyncIterator[bytes]) -> ImportReport:
        ended = False
        try:
            async for raw in lines:
                if ended:
                    if raw.strip():
                        self.reader.parse(raw)
                        raise self.reader.bad("a line after the end record")
                    continue
                ended = await self._line(raw)
            if not ended:
                self.reader.line += 1
                raise self.reader.bad("the file ends without its end record: it is truncated")
        except BadExport:
            if not self.refused:
                await self._flush()  # the store is left at the last complete context
            raise
        await self._flush()
        if self.ids is not None:
            self.report.id_map = self.ids.ranges()
        return self.report

    async def _line(self, raw: bytes) -> bool:
        record = self.reader.parse(raw)
        if self.reader.line == 1:
            header = self.reader.header(record)
            self.report.source = header["source"]["store_id"]
            self.ids = await IdMap.load(self.backend, self.report.source, self.preserve)
            return False
        kind = record.get("kind")
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise self.reader.bad(f"unknown record kind {kind!r}", kind=kind)
        return bool(await handler(self))

    async def _bundle(self) -> bool:
        if self.seen[1]:
            raise self.reader.bad("a bundle after the first context: bundles come first")
        bundle_id, published_at, body = self.reader.bundle()
        self.seen[0] += 1
        try:
            published = await self.service.publish_bundle(bundle_id, body, published_at)
        except (Unprocessable, Conflict) as exc:
            raise self.reader.bad(f"bundle {bundle_id!r}: {exc.message}", **exc.details) from exc
        if published.created:
            self.report.bundles += 1
        else:
            self.report.bundles_present += 1
        return False

    async def _context(self) -> bool:
        if self.group is not None:
            raise self.reader.bad("a context before the head of the one before it")
        ids = self._ids()
        found = self.reader.context()
        lineage = found.lineage
        self.group = dataclasses.replace(
            found, context_id=ContextId(await ids.context(found.context_id)),
            lineage=Lineage(ContextId(await ids.context(lineage.parent_context_id or 0)) or None,
                            ContextId(await ids.context(lineage.root_context_id)),
                            TurnId(await ids.turn(lineage.fork_turn_id or 0)) or None))
        self.pending.lines[("context", self.group.context_id)] = self.reader.line
        self.seen[1] += 1
        return False

    async def _turn(self) -> bool:
        if self.group is None:
            raise self.reader.bad("a turn outside a context's group")
        ids = self._ids()
        record, payload = self.reader.turn()
        record = record._replace(turn_id=TurnId(await ids.turn(record.turn_id)),
                                 parent_turn_id=TurnId(await ids.turn(record.parent_turn_id)),
                                 context_id=ContextId(await ids.context(record.context_id)))
        self.pending.turns.append(RestoredTurn(record, payload))
        self.pending.lines[("turn", record.turn_id)] = self.reader.line
        self.pending.payload_bytes += len(payload)
        self.seen[2] += 1
        if self.pending.payload_bytes >= SPILL_BYTES:
            self.pending.complete_turns = len(self.pending.turns)  # this context's turns go ahead of it
            await self._flush()
        return False

    async def _replaced(self) -> bool:
        self._in_group("replaced_head")
        ids = self._ids()
        entry = self.reader.replaced()
        self.history.append(dataclasses.replace(entry, head_turn_id=await ids.turn(entry.head_turn_id),
                                                replaced_by_turn_id=await ids.turn(entry.replaced_by_turn_id)))
        return False

    async def _key(self) -> bool:
        self._in_group("idempotency_key")
        entry = self.reader.key()
        self.keys.append(dataclasses.replace(entry, turn_id=await self._ids().turn(entry.turn_id)))
        return False

    async def _head(self) -> bool:
        group = self._in_group("head")
        head, depth, activity = self.reader.head()
        if await self._ids().context(self._source_id()) != group.context_id:
            raise self.reader.bad("a head for another context than its group's")
        record = dataclasses.replace(group, head_turn_id=TurnId(await self._ids().turn(head)), head_depth=depth,
                                     last_activity_ms=activity)
        self.pending.contexts.append(RestoredContext(record, tuple(self.history), tuple(self.keys)))
        self.pending.complete_turns = len(self.pending.turns)
        self.pending.ends.append(len(self.pending.turns))
        self.group, self.history, self.keys = None, [], []
        pending = self.pending
        if (pending.payload_bytes >= FLUSH_BYTES or len(pending.turns) >= FLUSH_TURNS
                or len(pending.contexts) >= FLUSH_CONTEXTS):
            await self._flush()
        return False

    async def _end(self) -> bool:
        if self.group is not None:
            raise self.reader.bad("the end record inside a context's group")
        expected = self.reader.end()
        if expected != tuple(self.seen):
            raise self.reader.bad(f"the end record counts (bundles, contexts, turns) {expected}, the file holds "
                                  f"{tuple(self.seen)}: it is damaged")
        return True

    _HANDLERS: dict[str, Callable[[_Import], Any]] = {
        "bundle": _bundle, "context": _context, "turn": _turn, "replaced_head": _replaced,
        "idempotency_key": _key, "head": _head, "end": _end}

    def _ids(self) -> IdMap:
        assert self.ids is not None  # the header comes first
        return self.ids

    def _source_id(self) -> int:
        return self.reader.ident("context_id")

    def _in_group(self, kind: str) -> ContextRecord:
        if self.group is None:
            raise self.reader.bad(f"a {kind} record outside a context's group")
        return self.group

    async def _flush(self) -> None:
        """Write the complete contexts read (and the turns read ahead of a large one's head)."""
        pending = self.pending
        turns = pending.turns[:pending.complete_turns]
        if not turns and not pending.contexts:
            return
        try:
            done = await self.backend.restore(turns, pending.contexts)
        except (Unprocessable, Conflict):
            done = await self._one_by_one(turns)  # write the contexts before the one refused, then stop
        self.report.written = self.report.written + done
        rest = pending.turns[len(turns):]
        self.pending = _Pending(turns=rest, payload_bytes=sum(len(t.payload) for t in rest),
                                lines={("turn", t.record.turn_id): pending.lines[("turn", t.record.turn_id)]
                                       for t in rest})
        if self.progress is not None:
            self.progress(len(turns))

    async def _one_by_one(self, turns: list[RestoredTurn]) -> Restored:
        """The pending contexts written one at a time, up to the one the store refuses: raises its
        error, naming its line, once the ones before it are written."""
        pending = self.pending
        done = Restored()
        start = 0
        for context, end in zip(pending.contexts, pending.ends, strict=True):
            try:
                done = done + await self.backend.restore(turns[start:end], [context])
            except (Unprocessable, Conflict) as exc:
                self.refused = True
                self.report.written = self.report.written + done
                raise BadExport(self._line_of(exc.details), exc.message, exc.details) from exc
            start = end
        try:
            return done + await self.backend.restore(turns[start:], [])
        except (Unprocessable, Conflict) as exc:
            self.refused = True
            self.report.written = self.report.written + done
            raise BadExport(self._line_of(exc.details), exc.message, exc.details) from exc

    def _line_of(self, details: dict[str, Any]) -> int:
        for kind in ("turn", "context"):
            named = details.get(f"{kind}_id")
            if named is not None and (kind, int(named)) in self.pending.lines:
                return self.pending.lines[(kind, int(named))]
        return self.reader.line


async def import_lines(service: Service, lines: AsyncIterator[bytes], preserve: bool | None = None,
                       progress: Callable[[int], object] | None = None) -> ImportReport:
    """Import the lines of an export into ``service``'s store (see the module's docstring). ``preserve``:
    True keeps the ids as they are, False gives fresh ones, None decides (:meth:`IdMap.load`).
    ``progress`` is told how many turns each write took in. Raises :class:`BadExport`."""
    return await _Import(service, preserve, progress).run(lines)
