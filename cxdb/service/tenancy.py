"""Namespaces: what a token confined to a ``client_tag`` prefix sees.

A context is inside a namespace when its tag starts with the prefix. Everything else is, to such a
token, absent: a context outside answers exactly as a missing one does (404), a turn outside (one
appended to a context outside) as a missing turn, and lists, children, lineage, counts and events
leave them out. Contexts it creates or forks must carry a tag inside (422 otherwise): the namespace is
never applied behind the caller's back, so the tag a client sends is the tag it gets.

Every function here is a no-op (one comparison) for ``namespace=None``: tokens without a namespace,
and servers without access control.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from ..errors import CxdbError, Unprocessable
from ..model import ContextRecord, Lineage
from ..storage import Backend
from ..storage.rules import missing_context, missing_turn, parent_not_found
from .events import FeedItem
from .views import MAX_LINEAGE_CHILDREN

__all__ = ["MAX_FILTERED", "NOTHING", "ContextFilter", "check_new_tag", "children", "inside", "lineage", "narrowest",
           "require_base", "require_context", "require_parent", "require_turn"]

MAX_FILTERED = 10_000
"""The most children a namespaced view reads to filter (its counts count among these)."""


NOTHING = "\x00nothing"
"""What :func:`narrowest` gives for two prefixes no tag can start with both of."""


def narrowest(prefix: str | None, namespace: str | None) -> str | None:
    """The one prefix a tag must start with to start with both (None: no condition)."""
    if prefix is None or namespace is None:
        return prefix if namespace is None else namespace
    if prefix.startswith(namespace):
        return prefix
    return namespace if namespace.startswith(prefix) else NOTHING


def inside(tag: str | None, namespace: str | None) -> bool:
    return namespace is None or (tag is not None and tag.startswith(namespace))


async def require_context(store: Backend, context_id: int, namespace: str | None) -> None:
    """NotFound, as for a missing context, unless the context is inside the namespace."""
    if namespace is not None and not inside((await store.get_context(context_id)).client_tag, namespace):
        raise missing_context(context_id)


async def require_turn(store: Backend, turn_id: int, namespace: str | None, missing: CxdbError) -> None:
    """``missing`` unless the turn was appended to a context inside the namespace."""
    if namespace is None or not turn_id:
        return
    found = await store.turn(turn_id)
    if found is None or not await _visible(store, found.context_id, namespace):
        raise missing


async def require_base(store: Backend, turn_id: int, namespace: str | None) -> None:
    await require_turn(store, turn_id, namespace, missing_turn(turn_id))


async def require_parent(store: Backend, context_id: int, parent_turn_id: int | None,
                         namespace: str | None) -> None:
    if parent_turn_id:
        await require_turn(store, parent_turn_id, namespace, parent_not_found(context_id, parent_turn_id))


def check_new_tag(client_tag: str | None, namespace: str | None) -> None:
    if not inside(client_tag, namespace):
        raise Unprocessable(f"this token's namespace is {namespace!r}: a context it creates needs a client_tag "
                            "starting with it", {"field": "client_tag", "namespace": namespace})


async def _visible(store: Backend, context_id: int, namespace: str) -> bool:
    try:
        return inside((await store.get_context(context_id)).client_tag, namespace)
    except CxdbError as exc:
        if exc.code == "NOT_FOUND":
            return False
        raise


async def children(store: Backend, context_id: int, recursive: bool, limit: int,
                   namespace: str) -> tuple[list[ContextRecord], int]:
    """The children inside the namespace, and how many (among the first :data:`MAX_FILTERED`)."""
    found, _ = await store.children(context_id, recursive, MAX_FILTERED)
    shown = [child for child in found if inside(child.client_tag, namespace)]
    return shown[:limit], len(shown)


async def lineage(store: Backend, context: ContextRecord, namespace: str) -> tuple[ContextRecord, list[int], int]:
    """The context as a namespaced token sees its lineage: a parent or root outside is not named (the
    context shows as its own root), and only children inside are listed and counted."""
    kids: list[int] = []
    count = 0
    _, total = await store.child_ids(context.context_id, 1)
    if total:
        shown, count = await children(store, context.context_id, False, MAX_LINEAGE_CHILDREN, namespace)
        kids = [child.context_id for child in shown]
    old = context.lineage
    parent = old.parent_context_id
    if parent is not None and not await _visible(store, parent, namespace):
        context = replace(context, lineage=Lineage(None, context.context_id, old.fork_turn_id))
    elif old.root_context_id != context.context_id and not await _visible(store, old.root_context_id, namespace):
        context = replace(context, lineage=Lineage(parent, context.context_id, old.fork_turn_id))
    return context, kids, count


class ContextFilter:
    """Which contexts' events a namespaced stream may see: each context's tag is read once (a tag never
    changes) and remembered, up to :data:`MAX_FILTERED` contexts."""

    def __init__(self, store: Backend, namespace: str) -> None:
        self._store = store
        self._namespace = namespace
        self._known: dict[int, bool] = {}

    async def shown(self, item: FeedItem) -> FeedItem | None:
        """The event as the namespace sees it: None for another namespace's, and a new context's parent
        left out when it is outside."""
        if not await self.allows(item.context_id):
            return None
        if item.kind == "context_created" and b'"parent_context_id"' in item.data:
            data = orjson.loads(item.data)
            if not await self.allows(int(data["parent_context_id"])):
                del data["parent_context_id"]
                return FeedItem(item.sequence, item.kind, item.context_id, orjson.dumps(data))
        return item

    async def allows(self, context_id: int | None) -> bool:
        if context_id is None:  # the registry is the same for every namespace
            return True
        known = self._known.get(context_id)
        if known is None:
            known = await _visible(self._store, context_id, self._namespace)
            if len(self._known) >= MAX_FILTERED:
                self._known.clear()
            self._known[context_id] = known
        return known
