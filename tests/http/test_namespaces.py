"""Tokens with a namespace: a client_tag prefix outside which nothing exists, on every route.

The property: random sequences of creates, forks, appends, listings, reads and event reads by two
namespaced tokens and an admin, against a live server; no answer to a namespaced token ever holds an
id, tag, payload, event or count of the other namespace, and a context or turn outside answers
exactly as one that does not exist.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxdb import Client, CxdbError, Forbidden, NotFound
from tests.conftest import BACKENDS, LiveServer, fresh_store
from tests.http.streams import Stream

BOOT = "namespace-tests-bootstrap-token-0123456789"
CONTEXT_KEYS = frozenset({"context_id", "parent_context_id", "root_context_id"})
TURN_KEYS = frozenset({"turn_id", "parent_turn_id", "head_turn_id", "fork_turn_id", "next_before_turn_id",
                       "replaced_by_turn_id", "replaced_head_turn_id", "common_ancestor_turn_id"})


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_store(str(request.param), tmp_path_factory.mktemp("ns")) as url:
        live = LiveServer(url, "--auth", "tokens", "--event-heartbeat", "0.1", env={"CXDB_BOOTSTRAP_TOKEN": BOOT})
        try:
            yield live
        finally:
            live.stop()


def _token(admin: Client, scope: str, namespace: str | None) -> str:
    return str(admin.create_token(scope, namespace=namespace)["token"])


def _ids(value: Any, contexts: set[str], turns: set[str], strings: set[str]) -> None:
    """Every context id, turn id and string in an answer."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in CONTEXT_KEYS and isinstance(item, str):
                contexts.add(item)
            elif key in TURN_KEYS and isinstance(item, str):
                turns.add(item)
            elif key == "children" and isinstance(item, list) and all(isinstance(x, str) for x in item):
                contexts.update(item)
            else:
                _ids(item, contexts, turns, strings)
    elif isinstance(value, list):
        for item in value:
            _ids(item, contexts, turns, strings)
    elif isinstance(value, str):
        strings.add(value)


@dataclass
class Side:
    """What one namespace owns, as the test made it."""

    namespace: str
    client: Client
    contexts: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    events: int = 0

    def owns_context(self, context_id: int) -> bool:
        return context_id in self.contexts


class World:
    def __init__(self, server: LiveServer, number: int) -> None:
        self.admin = Client(server.url, token=BOOT)
        self.url = server.url
        self.start = int(self.admin.stats()["newest_event_sequence"])
        self.sides = [Side(f"ns{number}{name}/", Client(server.url, token=_token(
            self.admin, "cxdb:write", f"ns{number}{name}/"))) for name in "ab"]
        self.counter = itertools.count()

    def close(self) -> None:
        for client in (self.admin, *(side.client for side in self.sides)):
            client.close()

    def all_contexts(self) -> list[int]:
        return [c for side in self.sides for c in side.contexts]

    def all_turns(self) -> list[int]:
        return [t for side in self.sides for t in side.turns]

    def owner(self, context_id: int) -> Side:
        return next(side for side in self.sides if side.owns_context(context_id))

    def check_clean(self, side: Side, answer: Any) -> None:
        """Nothing of the other side in an answer to ``side``."""
        other = self.sides[1 - self.sides.index(side)]
        contexts: set[str] = set()
        turns: set[str] = set()
        strings: set[str] = set()
        _ids(answer, contexts, turns, strings)
        assert not contexts & {str(c) for c in other.contexts}, answer
        assert not turns & {str(t) for t in other.turns}, answer
        text = json.dumps(answer)
        assert other.namespace not in text and not any(secret in text for secret in other.secrets), answer

    def check_missing(self, call: Any, kind: type[CxdbError], reference: Any) -> None:
        """``call`` fails exactly as ``reference`` (the same call on something that never existed) does,
        but for the id it names."""
        with pytest.raises(kind) as outside:
            call()
        with pytest.raises(kind) as never:
            reference()
        assert outside.value.status == never.value.status and outside.value.code == never.value.code
        assert outside.value.details.get("reason") == never.value.details.get("reason")


NEVER = 2**62  # an id no test store reaches


def _op(world: World, step: tuple[str, int, int, int]) -> None:
    kind, who, pick, extra = step
    contexts, turns = world.all_contexts(), world.all_turns()
    if who == 2:  # the admin: creates and appends inside either namespace, so each side has neighbours
        side = world.sides[pick % 2]
        if kind == "create" or not side.contexts:
            made = world.admin.create_context(client_tag=side.namespace + f"admin{next(world.counter)}")
            side.contexts.append(int(made["context_id"]))
            side.events += 1
        else:
            context_id = side.contexts[extra % len(side.contexts)]
            secret = f"secret-{side.namespace}-{next(world.counter)}"
            turn = world.admin.append_turn(context_id, type_id="t", type_version=1, data={"text": secret})
            side.turns.append(int(turn["turn_id"]))
            side.secrets.add(secret)
            side.events += 1
        return
    side = world.sides[who]
    client = side.client
    if kind == "create":
        made = client.create_context(client_tag=side.namespace + f"c{next(world.counter)}")
        world.check_clean(side, made)
        side.contexts.append(int(made["context_id"]))
        side.events += 1
        with pytest.raises(CxdbError) as refused:
            client.create_context(client_tag="elsewhere/")
        assert refused.value.status == 422
    elif kind == "fork" and turns:
        base = turns[pick % len(turns)]
        tag = side.namespace + f"f{next(world.counter)}"
        if base in side.turns:
            made = client.fork_context(base, client_tag=tag)
            world.check_clean(side, made)
            side.contexts.append(int(made["context_id"]))
            side.events += 1
        else:
            world.check_missing(lambda: client.fork_context(base, client_tag=tag), NotFound,
                                lambda: client.fork_context(NEVER, client_tag=tag))
    elif kind == "append" and contexts:
        context_id = contexts[pick % len(contexts)]
        parent = turns[extra % len(turns)] if turns and extra % 3 == 0 else None
        secret = f"secret-{side.namespace}-{next(world.counter)}"

        def append(target: int = context_id, parent_turn_id: int | None = parent) -> Any:
            return client.append_turn(target, type_id="t", type_version=1, data={"text": secret},
                                      parent_turn_id=parent_turn_id)

        if not side.owns_context(context_id):
            world.check_missing(append, NotFound, lambda: append(NEVER))
        elif parent is not None and parent not in side.turns:
            world.check_missing(append, CxdbError, lambda: append(context_id, NEVER))
        else:
            turn = append()
            world.check_clean(side, turn)
            side.turns.append(int(turn["turn_id"]))
            side.secrets.add(secret)
            side.events += 1
    elif kind == "read" and contexts:
        context_id = contexts[pick % len(contexts)]
        reads = [lambda c: client.get_context(c), lambda c: client.children(c, recursive=True),
                 lambda c: client.get_turns(c, limit=50), lambda c: client.heads(c), lambda c: client.provenance(c)]
        read = reads[extra % len(reads)]
        if side.owns_context(context_id):
            world.check_clean(side, read(context_id))
        else:
            world.check_missing(lambda: read(context_id), NotFound, lambda: read(NEVER))
    else:  # a listing: exactly this side's contexts
        listed = client.list_contexts(limit=10_000, include_lineage=True)
        world.check_clean(side, listed)
        assert sorted(int(c["context_id"]) for c in listed["contexts"]) == sorted(side.contexts)
        assert listed["total"] == len(side.contexts)


def _events(world: World, side: Side) -> list[dict[str, Any]]:
    """This side's events since the world began, up to the first heartbeat after them."""
    stream = Stream(world.url, f"?after={world.start}",
                    headers={"Authorization": side.client._headers["Authorization"]})
    try:
        assert stream.status == 200
        found = []
        while True:
            block = stream.frame()
            if "heartbeat" in block["comments"] and len(found) >= side.events:
                return found
            if "event" in block:
                found.append(block)
    finally:
        stream.close()


STEPS = st.lists(st.tuples(st.sampled_from(["create", "fork", "append", "read", "list"]), st.integers(0, 2),
                           st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=14)
WORLDS = itertools.count()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_no_namespace_sees_the_other(server: LiveServer, steps: list[tuple[str, int, int, int]]) -> None:
    world = World(server, next(WORLDS))
    try:
        for step in steps:
            _op(world, step)
        for side in world.sides:
            events = _events(world, side)
            world.check_clean(side, [event["data"] for event in events])
            assert len(events) == side.events
            assert {int(e["data"]["context_id"]) for e in events} <= set(side.contexts)
            listed = side.client.list_contexts(limit=10_000)
            assert listed["total"] == len(side.contexts)
    finally:
        world.close()


def test_what_a_namespaced_token_may_not_do(server: LiveServer) -> None:
    world = World(server, 10_000)
    try:
        a, b = world.sides
        a_root = int(a.client.create_context(client_tag=a.namespace + "root")["context_id"])
        turn = a.client.append_turn(a_root, type_id="t", type_version=1, data={"text": "mine"})
        digest = turn["content_hash"]
        # Routes over the whole store are closed to a namespace; the registry is shared.
        for call in (a.client.stats, lambda: a.client.get_blob(digest), a.client.list_tokens):
            with pytest.raises(Forbidden):
                call()
        assert world.admin.get_blob(digest)
        a.client.list_types()
        a.client.list_bundles()
        # A read-only token in the namespace sees it and writes nothing.
        with Client(world.url, token=_token(world.admin, "cxdb:read", a.namespace)) as reader:
            assert reader.get_context(a_root)["client_tag"] == a.namespace + "root"
            with pytest.raises(Forbidden):
                reader.append_turn(a_root, type_id="t", type_version=1, data={})
        # An admin fork across namespaces: each side sees only its own end of the lineage.
        b_fork = world.admin.fork_context(turn["turn_id"], client_tag=b.namespace + "fork")
        b_id = int(b_fork["context_id"])
        seen_by_b = b.client.get_context(b_id)
        assert seen_by_b["lineage"]["parent_context_id"] is None
        assert seen_by_b["lineage"]["root_context_id"] == str(b_id)
        seen_by_a = a.client.get_context(a_root)
        assert seen_by_a["lineage"]["children"] == [] and seen_by_a["lineage"]["child_count"] == 0
        assert a.client.children(a_root)["total"] == 0
        assert world.admin.get_context(a_root)["lineage"]["child_count"] == 1
        stream = Stream(world.url, f"?after={world.start}&events=context_created",
                        headers={"Authorization": b.client._headers["Authorization"]})
        try:
            created = stream.event()
            assert created["data"]["context_id"] == str(b_id) and "parent_context_id" not in created["data"]
        finally:
            stream.close()
        # Its own follow and exact turns work; the other side's are missing.
        with pytest.raises(NotFound):
            b.client.get_turn(a_root, turn["turn_id"])
        assert a.client.get_turn(a_root, turn["turn_id"])["data"] == {"text": "mine"}
        follow = Stream(world.url, "?after_turn_id=0", path=f"/v1/contexts/{a_root}/follow",
                        headers={"Authorization": b.client._headers["Authorization"]})
        assert follow.status == 404
        follow.close()
    finally:
        world.close()
