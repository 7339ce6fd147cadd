"""The store the service layer talks to: one interface, one implementation per backend.

Every operation that may wait on a database is a coroutine, so a backend reached over the network
never blocks the event loop; the LMDB backend answers them at once. The service layer depends on
:class:`Backend` alone and never asks which backend it has. The records a backend returns are
defined here, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..errors import CxdbError
from ..model import ContextRecord, StoreStats, TurnId, TurnRecord

__all__ = ["EVENT_KINDS", "AppendResult", "Backend", "CommitObserver", "Event", "HeadEntry", "KeyEntry", "NewTurn",
           "PageStart", "Pending", "Reclaimed", "RegistryMoved", "Restored", "RestoredContext", "RestoredTurn",
           "StoredBundle"]

CommitObserver = Callable[[int, float, int], None]
"""Told of each committed write batch: (operations, seconds it took, operations still waiting)."""


class RegistryMoved(CxdbError):
    """The registry changed since the caller encoded its payload or checked its bundle: do it again."""


class AppendResult(NamedTuple):
    """The turn an append created, or found again through its idempotency key."""

    turn: TurnRecord
    replayed: bool
    replaced_head_turn_id: int | None = None
    """The head the append moved away from, when the new turn does not descend from it (recorded in
    the context's head history)."""


class NewTurn(NamedTuple):
    """One turn of a batch append: its type, encoded payload and idempotency key (with the
    fingerprint of the request that key stands for; by default the type, payload and parent)."""

    type_id: str
    type_version: int
    payload: bytes
    idempotency_key: str | None = None
    fingerprint: bytes | None = None


@dataclass(frozen=True, slots=True)
class HeadEntry:
    """A head a context had until an append moved it to a turn that does not descend from it."""

    head_turn_id: int
    head_depth: int
    replaced_by_turn_id: int
    replaced_at_ms: int


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """An idempotency key of a context: the turn its first request made, when, and the digest of what
    that request asked for."""

    key: str
    turn_id: int
    created_at_ms: int
    request: bytes


@dataclass(frozen=True, slots=True)
class RestoredTurn:
    """A turn to write as it was exported: its id, links and times kept (the jump pointer and the
    stored compression are the backend's to compute), with its payload."""

    record: TurnRecord
    payload: bytes


@dataclass(frozen=True, slots=True)
class RestoredContext:
    """A context to write as it was exported: its record (id, head, times, tag, provenance, lineage),
    head history and idempotency keys."""

    record: ContextRecord
    history: Sequence[HeadEntry] = ()
    keys: Sequence[KeyEntry] = ()


@dataclass(frozen=True, slots=True)
class Restored:
    """What a :meth:`Backend.restore` wrote, and what it found in the store already."""

    turns: int = 0
    contexts: int = 0
    turns_present: int = 0
    contexts_present: int = 0

    def __add__(self, other: Restored) -> Restored:
        return Restored(self.turns + other.turns, self.contexts + other.contexts,
                        self.turns_present + other.turns_present, self.contexts_present + other.contexts_present)


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What one :meth:`Backend.reclaim` step did, and whether work remains."""

    contexts: int = 0
    """Deleted contexts whose head history and idempotency keys are now all gone."""
    turns: int = 0
    blobs: int = 0
    bytes: int = 0
    """Stored bytes of the blobs deleted."""
    more: bool = False

    def __add__(self, other: Reclaimed) -> Reclaimed:
        return Reclaimed(self.contexts + other.contexts, self.turns + other.turns, self.blobs + other.blobs,
                         self.bytes + other.bytes, other.more)


@dataclass(frozen=True, slots=True)
class Pending:
    """What awaits reclamation, O(1) to read: deleted contexts still to purge, turns found unreachable
    (marked, or queued to be marked: following a chain finds more as it goes), blobs no turn names,
    and those blobs' stored bytes."""

    contexts: int = 0
    turns: int = 0
    blobs: int = 0
    bytes: int = 0


class PageStart(NamedTuple):
    """Where a page starts, and the registry generation, read in one snapshot."""

    context: ContextRecord
    start: int
    registry_generation: int


@dataclass(frozen=True, slots=True)
class StoredBundle:
    """A published bundle as stored."""

    bundle_id: str
    sequence: int
    published_at_ms: int
    body: bytes


EVENT_KINDS = ("context_created", "turn_appended", "registry_published", "context_deleted")
"""The kinds of change the event log records; an event's kind is stored as its index here + 1."""


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event log, with what it names, read back in the same snapshot.

    ``context_created``: ``context`` (its head as created is ``head_turn_id``/``head_depth``, the turn it
    was forked at, or 0). ``turn_appended``: ``turn``. ``registry_published``: ``bundle_id``.
    ``context_deleted``: ``context_id`` (the context is gone; its head then was ``head_turn_id``).
    """

    sequence: int
    kind: str
    created_at_ms: int
    context: ContextRecord | None = None
    turn: TurnRecord | None = None
    bundle_id: str | None = None
    head_turn_id: int = 0
    head_depth: int = 0
    context_id: int = 0


class Backend(Protocol):
    """What a store does for the service. Semantics every backend keeps (docs/architecture.md):

    - ids are u64, monotonic, never reused;
    - appends to one context are linearizable, heads move by compare-and-set;
    - an idempotency key makes one turn, however many retries race;
    - an acknowledged write is durable;
    - paging is O(limit) at any depth; counters are O(1).
    """

    async def start(self) -> None:
        """Open what the backend needs (connections, schema checks) before the first operation."""

    async def create_context(self, base_turn_id: int = 0, client_tag: str | None = None,
                             provenance: dict[str, Any] | None = None) -> ContextRecord:
        """A new context whose head is ``base_turn_id`` (0: empty); NotFound for a missing base."""

    async def append(self, context_id: int, type_id: str, type_version: int, payload: bytes,
                     parent_turn_id: int | None = None, idempotency_key: str | None = None,
                     registry_generation: int | None = None, fingerprint: bytes | None = None,
                     expected_head_turn_id: int | None = None) -> AppendResult:
        """Append a turn and move the head to it; RegistryMoved when the generation is stale. With
        ``expected_head_turn_id``, only if the head is that turn when the append commits (else
        :func:`~cxdb.storage.rules.head_moved`); an idempotent replay is answered first."""

    async def append_batch(self, context_id: int, turns: Sequence[NewTurn], parent_turn_id: int | None = None,
                           expected_head_turn_id: int | None = None,
                           registry_generation: int | None = None) -> list[AppendResult]:
        """Append ``turns`` as a chain from ``parent_turn_id`` (default: the head), all in one
        transaction or none. A batch whose items all repeat their idempotency keys replays as a
        whole; some repeating and some not is a Conflict (:func:`~cxdb.storage.rules.partly_replayed`).
        The first result names the head replaced, if any."""

    async def publish_bundle(self, bundle_id: str, body: bytes, generation: int,
                             published_at_ms: int | None = None) -> tuple[StoredBundle, bool]:
        """Store a checked bundle (as published at ``published_at_ms``, by default now); True when new.
        RegistryMoved when the generation is stale."""

    async def get_context(self, context_id: int) -> ContextRecord:
        """The context; NotFound if it does not exist."""

    async def list_contexts(self, limit: int, tag: str | None = None, prefix: str | None = None,
                            before: tuple[int, int] | None = None) -> tuple[list[ContextRecord], int]:
        """Up to ``limit`` contexts, newest activity first, and how many match: those tagged exactly
        ``tag`` and, with ``prefix``, only those whose tag starts with it (a namespace). With ``before``
        (last activity ms, context id), only those that sort below it: the next page."""

    async def children(self, context_id: int, recursive: bool = False,
                       limit: int = 256) -> tuple[list[ContextRecord], int]:
        """Child contexts (breadth first when recursive), up to ``limit``, and how many there are."""

    async def child_ids(self, context_id: int, limit: int) -> tuple[list[int], int]:
        """The first ``limit`` children of a context, oldest first, and how many it has."""

    async def page_start(self, context_id: int, before_turn_id: int | None = None) -> PageStart:
        """The context, the newest turn of its page, and the registry generation, in one snapshot."""

    async def chain(self, start: int, limit: int) -> tuple[list[TurnRecord], TurnId | None]:
        """Up to ``limit`` turns ending at ``start``, oldest first, and the cursor to older ones."""

    async def head_history(self, context_id: int, limit: int,
                           before: int | None = None) -> tuple[list[HeadEntry], int | None]:
        """The context's replaced heads, newest first (those replaced by a turn below ``before``, when
        given), up to ``limit``, and the cursor to older ones; NotFound for a missing context."""

    async def turn_in_context(self, context_id: int, turn_id: int) -> TurnRecord | None:
        """The turn when it belongs to the context: on the chain of its head or of a replaced head
        (the turns appended to it, and the chain below its fork point); None otherwise. NotFound for
        a missing context."""

    async def turn(self, turn_id: int) -> TurnRecord | None:
        """One turn, or None when there is no such turn."""

    async def ancestor(self, turn_id: int, depth: int) -> int:
        """The id of the turn at ``depth`` on the chain of ``turn_id`` (itself at its own depth), in
        O(log depth) reads by jump pointers; 0 when there is none."""

    def note_cursor(self, context: ContextRecord, cursor: int, parent: int) -> None:
        """Remember that ``cursor`` (whose parent is ``parent``) is on the chain of the context's head."""

    async def payloads(self, hashes: Iterable[bytes]) -> dict[bytes, bytes]:
        """The uncompressed bytes of each blob named that exists."""

    async def get_blob(self, digest: bytes) -> bytes:
        """A blob's uncompressed bytes; NotFound if absent."""

    async def stats(self) -> StoreStats:
        """The counters of ``/v1/stats``, O(1)."""

    async def figures(self) -> dict[str, int]:
        """The counters and sizes the metrics report, O(1)."""

    async def bundles(self, after: int = 0) -> list[StoredBundle]:
        """The bundles published after sequence ``after``, in publish order."""

    async def get_bundle(self, bundle_id: str) -> StoredBundle:
        """A bundle; NotFound if absent."""

    async def registry_generation(self) -> int:
        """How many bundles have been published."""

    async def events(self, after: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with a sequence above ``after``, in sequence order. Sequences grow
        strictly in commit order, and an event is written in the transaction of its change."""

    async def event_bounds(self) -> tuple[int, int]:
        """(oldest, newest) sequence retained; (0, newest) when none is."""

    async def prune_events(self, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events recorded before ``before_ms``; how many went."""

    async def context_ids(self, after: int, limit: int) -> list[int]:
        """Up to ``limit`` context ids above ``after``, in id order."""

    async def idempotency_keys(self, context_id: int, after: str | None, limit: int) -> list[KeyEntry]:
        """Up to ``limit`` idempotency keys of a context (those sorting after ``after``, when given), in
        the order of their UTF-8 bytes."""

    async def id_bounds(self) -> tuple[int, int]:
        """The highest context id and turn id allocated so far (0 when none)."""

    async def reserve_ids(self, contexts: int, turns: int) -> tuple[int, int]:
        """Allocate ``contexts`` context ids and ``turns`` turn ids, durably, that no write will use:
        the first of each range."""

    async def restore(self, turns: Sequence[RestoredTurn], contexts: Sequence[RestoredContext]) -> Restored:
        """Write exported records with their own ids and times, in one transaction, or none of them
        (:mod:`cxdb.portable`). Turns come parents first: each parent is in the store or earlier in
        ``turns``. Every turn a context names (head, fork point, history, keys) is in the store or in
        ``turns``. A record whose id the store holds already is skipped when it is the same record
        (:func:`~cxdb.storage.rules.restored_turn_clash`, :func:`~cxdb.storage.rules.restored_context_clash`)
        and a Conflict otherwise; a context skipped keeps its history and keys, and its head unless the
        head restored descends from it (appended to in the source since): then the head moves to it. The next
        ids allocated stay above every id written. A new context is recorded as ``context_created``."""

    async def delete_context(self, context_id: int, recursive: bool = False) -> list[int]:
        """Delete a context (with ``recursive``, and every descendant: at most
        :data:`~cxdb.storage.rules.MAX_DELETE` contexts, else Unprocessable) in one transaction: the ids
        deleted. Each is gone from every read and index at once and recorded as ``context_deleted``; its
        head loses the reference the context held, and its head history and idempotency keys await
        :meth:`reclaim`. NotFound for a missing context."""

    async def reclaim(self, budget: int) -> Reclaimed:
        """One bounded step of reclamation, one transaction of at most about ``budget`` records:
        purge deleted contexts' history and keys, follow turns whose references fell to 0 up their
        chains, delete them and the blobs no turn names. Resumable after a crash at any point."""

    async def expire(self, history_before_ms: int, keys_before_ms: int, budget: int) -> tuple[int, int]:
        """Delete up to ``budget`` head-history entries recorded before ``history_before_ms`` and up
        to ``budget`` idempotency keys made before ``keys_before_ms``, oldest first: how many of each."""

    async def pending(self) -> Pending:
        """What awaits reclamation; O(1)."""

    async def auth_entry(self, name: str) -> bytes | None:
        """An access-control record (:mod:`cxdb.service.tokens` names them), or another small named
        record (the import ledger of :mod:`cxdb.portable`), or None."""

    async def auth_entries(self, prefix: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` access-control records whose names start with ``prefix``, in name order."""

    async def put_auth_entry(self, name: str, value: bytes, replace: bool) -> bytes:
        """Store an access-control record durably; without ``replace`` one that exists stays, and is
        returned (so racing processes agree on the first value)."""

    async def delete_auth_entry(self, name: str) -> None:
        """Remove an access-control record (none is fine)."""

    async def check(self) -> dict[str, Any]:
        """A report of the whole store's integrity."""

    def watch(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` soon after other processes commit changes, where the backend can tell (best
        effort: callers still poll the event log); True when it can. After :meth:`start`."""

    async def close(self) -> None:
        """Finish every acknowledged write, then release the store."""
