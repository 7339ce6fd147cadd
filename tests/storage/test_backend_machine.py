"""Model-based test: random create, fork, append, page, delete (plain and recursive) and reclamation
steps against a tiny in-memory model, on each backend through the storage interface the service uses.
After every step, every turn a live context reaches pages as the model says, and the store checks
clean (reference counts included)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cxdb.config import Settings
from cxdb.errors import Conflict, NotFound
from cxdb.model import Page
from cxdb.storage import Backend, open_backend
from cxdb.storage.base import Pending
from tests.conftest import NO_POSTGRES, POSTGRES, PostgresSchema


@dataclass
class ModelTurn:
    parent: int
    depth: int
    context: int
    payload: bytes


@dataclass
class ModelContext:
    head: int
    parent_context: int | None
    root: int
    fork_turn: int | None
    tag: str | None = None
    keys: dict[str, tuple[int, tuple[Any, ...]]] = field(default_factory=dict)
    history: list[int] = field(default_factory=list)
    """The heads appends moved it away from, oldest first."""


TAGS = st.sampled_from([None, None, "x", "y", "x2"])


class StoreMachine(RuleBasedStateMachine):
    backend = "lmdb"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cxdb-sm-"))
        self.schema = PostgresSchema() if self.backend == "postgres" else None
        url = self.schema.url if self.schema is not None else str(self.dir / "data")
        self.loop = asyncio.new_event_loop()
        self.store: Backend = open_backend(Settings(store=url))
        self.run(self.store.start())
        self.turns: dict[int, ModelTurn] = {}
        """Every turn acknowledged, those since reclaimed too."""
        self.contexts: dict[int, ModelContext] = {}
        """The live contexts."""
        self.deleted: set[int] = set()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def read_page(self, context_id: int, limit: int, before: int | None) -> Page:
        """A page as the service reads it: the start in one snapshot, then the chain below it."""
        context, start, _ = self.run(self.store.page_start(context_id, before))
        chain, next_before = self.run(self.store.chain(start, limit))
        if next_before is not None:
            self.store.note_cursor(context, next_before, chain[0].parent_turn_id)
        return Page(context, chain, next_before)

    def teardown(self) -> None:
        try:
            report = self.run(self.store.check())
            assert report["ok"], report
        finally:
            self.run(self.store.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.schema is not None:
                self.schema.drop()

    def chain(self, head: int) -> list[int]:
        out = []
        while head:
            out.append(head)
            head = self.turns[head].parent
        return out[::-1]

    def _register(self, record: Any, base: int, tag: str | None = None) -> None:
        if base:
            origin = self.turns[base].context
            # A fork of a deleted context's turn is a root of its own lineage (its parent stays named).
            root = self.contexts[origin].root if origin in self.contexts else record.context_id
            lineage = (origin, root, base)
        else:
            lineage = (None, record.context_id, None)
        self.contexts[record.context_id] = ModelContext(base, *lineage, tag=tag)
        assert record.client_tag == tag
        assert record.head_turn_id == base
        assert record.head_depth == (self.turns[base].depth if base else 0)
        assert (record.lineage.parent_context_id, record.lineage.root_context_id,
                record.lineage.fork_turn_id) == lineage

    @rule(tag=TAGS)
    def create_empty(self, tag: str | None) -> None:
        record = self.run(self.store.create_context(client_tag=tag))
        self._register(record, 0, tag)

    @precondition(lambda self: self.turns)
    @rule(data=st.data(), tag=TAGS)
    def fork(self, data: st.DataObject, tag: str | None) -> None:
        base = data.draw(st.sampled_from(sorted(self.turns)))
        live = base in self.live()
        try:
            record = self.run(self.store.create_context(base_turn_id=base, client_tag=tag))
        except NotFound:
            assert not live  # only a turn no live context reaches may be gone, or awaiting reclamation
            return
        self._register(record, base, tag)

    def live(self) -> set[int]:
        """The turns some live context reaches: the chains of its head and its replaced heads."""
        found: set[int] = set()
        for model in self.contexts.values():
            for top in (model.head, *model.history):
                found.update(self.chain(top))
        return found

    @rule(tag=st.sampled_from(["x", "y", "x2"]), limit=st.integers(0, 6))
    def list_by_tag(self, tag: str, limit: int) -> None:
        """The tag index answers what a scan of every context would: the newest activity first."""
        found, total = self.run(self.store.list_contexts(limit, tag=tag))
        tagged = [self.run(self.store.get_context(cid)) for cid, model in self.contexts.items() if model.tag == tag]
        assert total == len(tagged)
        newest = sorted(tagged, key=lambda c: (c.last_activity_ms, c.context_id), reverse=True)[:limit]
        assert [c.context_id for c in found] == [c.context_id for c in newest]

    @precondition(lambda self: self.contexts)
    @rule(data=st.data(), limit=st.integers(0, 4))
    def children(self, data: st.DataObject, limit: int) -> None:
        parent = data.draw(st.sampled_from(sorted(self.contexts)))
        kids = sorted(cid for cid, model in self.contexts.items() if model.parent_context == parent)
        found, total = self.run(self.store.children(parent, limit=limit))
        assert total == len(kids) and [c.context_id for c in found] == kids[:limit]
        assert self.run(self.store.child_ids(parent, limit)) == (kids[:limit], len(kids))
        subtree, everyone = self.run(self.store.children(parent, recursive=True, limit=limit))
        expected = self.subtree(parent)
        assert everyone == len(expected) and [c.context_id for c in subtree] == expected[:limit]

    def subtree(self, parent: int) -> list[int]:
        """Every descendant, breadth first, each level in its parents' order, children by id."""
        found: list[int] = []
        level = [parent]
        while level:
            level = [kid for p in level for kid in sorted(c for c, m in self.contexts.items() if m.parent_context == p)]
            found.extend(level)
        return found

    @rule(base=st.integers(10**6, 10**7))
    def fork_missing(self, base: int) -> None:
        try:
            self.run(self.store.create_context(base_turn_id=base))
        except NotFound:
            return
        raise AssertionError("fork from a missing turn succeeded")

    @precondition(lambda self: self.contexts)
    @rule(data=st.data(), body=st.integers(0, 5), parent_mode=st.sampled_from(["head", "existing", "missing", "root"]),
          key=st.sampled_from([None, None, "a", "b"]), expect=st.sampled_from([None, None, "head", "stale"]))
    def append(self, data: st.DataObject, body: int, parent_mode: str, key: str | None, expect: str | None) -> None:
        context_id = data.draw(st.sampled_from(sorted(self.contexts)))
        context = self.contexts[context_id]
        parent_arg: int | None = None
        if parent_mode == "existing" and self.turns:
            parent_arg = data.draw(st.sampled_from(sorted(self.turns)))
        elif parent_mode == "missing":
            parent_arg = 10**9
        elif parent_mode == "root":
            parent_arg = 0
        raw = msgpack.packb({"body": body})
        signature = (raw, parent_arg)
        gone_parent = parent_mode == "existing" and parent_arg not in self.live()
        expected_replay = context.keys.get(key) if key is not None else None
        expected_head = None
        if expect == "head":
            expected_head = context.head
        elif expect == "stale":
            others = [t for t in [0, *sorted(self.turns), 10**9] if t != context.head]
            expected_head = data.draw(st.sampled_from(others))
        try:
            result = self.run(self.store.append(context_id, "t", 1, raw, parent_turn_id=parent_arg,
                                                idempotency_key=key, expected_head_turn_id=expected_head))
        except Conflict as exc:
            conflict_key = expected_replay is not None and expected_replay[1] != signature
            if expected_replay is None and expect == "stale":  # a replay answers first; then the head
                assert exc.details == {"reason": "head_moved", "context_id": str(context_id),
                                       "expected_head_turn_id": str(expected_head), "head_turn_id": str(context.head)}
                return
            assert parent_mode == "missing" or conflict_key or gone_parent
            if not conflict_key:
                assert exc.details["reason"] == "parent_not_found"
            return
        if expected_replay is not None:
            assert expected_replay[1] == signature
            assert result.replayed and result.turn.turn_id == expected_replay[0]
            return
        assert parent_mode != "missing" and expect != "stale"
        assert not result.replayed
        parent = context.head if parent_arg is None else parent_arg
        turn = result.turn
        descends = context.head == 0 or context.head in self.chain(parent)
        assert result.replaced_head_turn_id == (None if descends else context.head)
        if not descends:
            context.history.append(context.head)
        assert turn.turn_id not in self.turns and all(turn.turn_id > t for t in self.turns)
        assert turn.parent_turn_id == parent
        assert turn.depth == (self.turns[parent].depth if parent else 0) + 1
        self.turns[turn.turn_id] = ModelTurn(parent, turn.depth, context_id, raw)
        context.head = turn.turn_id
        if key is not None:
            context.keys[key] = (turn.turn_id, signature)

    @precondition(lambda self: self.live())
    @rule(data=st.data(), up=st.integers(-1, 3))
    def ancestor(self, data: st.DataObject, up: int) -> None:
        turn_id = data.draw(st.sampled_from(sorted(self.live())))
        chain = self.chain(turn_id)
        depth = len(chain) - up
        want = chain[depth - 1] if 1 <= depth <= len(chain) else 0
        assert self.run(self.store.ancestor(turn_id, depth)) == want
        found = self.run(self.store.turn(turn_id))
        assert found is not None and (found.parent_turn_id, found.depth) == (self.turns[turn_id].parent,
                                                                             self.turns[turn_id].depth)
        assert self.run(self.store.turn(10**9)) is None

    @precondition(lambda self: self.contexts)
    @rule(data=st.data(), limit=st.integers(0, 8), cursor_mode=st.sampled_from(["none", "chain", "any"]))
    def page(self, data: st.DataObject, limit: int, cursor_mode: str) -> None:
        context_id = data.draw(st.sampled_from(sorted(self.contexts)))
        chain = self.chain(self.contexts[context_id].head)
        cursor = None
        if cursor_mode == "chain" and chain:
            cursor = data.draw(st.sampled_from(chain))
        elif cursor_mode == "any" and self.turns:
            cursor = data.draw(st.sampled_from(sorted(self.turns)))
        belongs = self.belonging(context_id)
        try:
            page = self.read_page(context_id, limit, cursor)
        except NotFound:
            assert cursor is not None and cursor not in belongs
            return
        assert cursor is None or cursor in belongs
        if cursor is not None:
            chain = self.chain(cursor)  # the cursor's own chain: the current one, or a replaced head's
        end = chain.index(cursor) if cursor is not None else len(chain)
        expected = chain[max(0, end - limit):end] if limit else []
        assert [t.turn_id for t in page.turns] == expected
        more = bool(expected) and expected[0] != chain[0]
        assert page.next_before_turn_id == (expected[0] if more else None)
        for turn in page.turns:
            assert self.run(self.store.get_blob(turn.content_hash)) == self.turns[turn.turn_id].payload

    def belonging(self, context_id: int) -> set[int]:
        """The turns on the chains of the context's head, replaced heads and fork point."""
        model = self.contexts[context_id]
        found: set[int] = set()
        for top in (model.head, *model.history, model.fork_turn or 0):
            found.update(self.chain(top))
        return found

    @invariant()
    def every_acknowledged_turn_stays_reachable(self) -> None:
        for context_id, model in self.contexts.items():
            entries, more = self.run(self.store.head_history(context_id, 1000))
            assert more is None
            assert [e.head_turn_id for e in entries] == list(reversed(model.history))
            reachable: set[int] = set()
            for top in (model.head, *(e.head_turn_id for e in entries)):
                reachable.update(self.chain(top))
            assert {t for t, turn in self.turns.items() if turn.context == context_id} <= reachable

    @precondition(lambda self: self.contexts)
    @rule(data=st.data(), recursive=st.booleans())
    def delete(self, data: st.DataObject, recursive: bool) -> None:
        context_id = data.draw(st.sampled_from(sorted(self.contexts)))
        expected = [context_id, *(self.subtree(context_id) if recursive else [])]
        assert sorted(self.run(self.store.delete_context(context_id, recursive))) == sorted(expected)
        for gone in expected:
            del self.contexts[gone]
            self.deleted.add(gone)

    @rule(data=st.data())
    def delete_missing(self, data: st.DataObject) -> None:
        context_id = data.draw(st.sampled_from(sorted(self.deleted | {10**9})))
        try:
            self.run(self.store.delete_context(context_id))
        except NotFound:
            return
        raise AssertionError("a context deleted twice")

    @rule(budget=st.integers(1, 20))
    def reclaim_step(self, budget: int) -> None:
        self.run(self.store.reclaim(budget))

    @rule()
    def reclaim_all(self) -> None:
        while self.run(self.store.reclaim(64)).more:
            pass
        assert self.run(self.store.pending()) == Pending()
        live = self.live()
        assert self.run(self.store.stats()).turns == len(live)  # exactly what live contexts reach is left
        for turn_id in live:
            found = self.run(self.store.turn(turn_id))
            assert found is not None
            assert self.run(self.store.get_blob(found.content_hash)) == self.turns[turn_id].payload

    @invariant()
    def heads_and_depths_agree(self) -> None:
        for context_id, model in self.contexts.items():
            stored = self.run(self.store.get_context(context_id))
            assert stored.head_turn_id == model.head
            assert stored.head_depth == (self.turns[model.head].depth if model.head else 0)
        stats = self.run(self.store.stats())
        assert stats.turns >= len(self.live()) and stats.contexts == len(self.contexts)

    @invariant()
    def checks_clean(self) -> None:
        report = self.run(self.store.check())
        assert report["ok"], report


class PostgresMachine(StoreMachine):
    backend = "postgres"


for machine, examples in ((StoreMachine, 40), (PostgresMachine, 30)):  # PostgreSQL's check is ~10 queries a step
    machine.TestCase.settings = settings(max_examples=examples, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestLmdbMachine = StoreMachine.TestCase
TestPostgresMachine = pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)(PostgresMachine.TestCase)

