"""The PostgreSQL schema, created and migrated by cxdb itself.

Every table lives in the first schema of the connection's ``search_path`` (``public`` unless the URL
says otherwise, e.g. ``?search_path=cxdb``). ``cxdb_schema`` holds one row, the schema version; a
database whose version this build does not know is refused at start, as an LMDB directory of another
format is.

Ids are ``bigint``: cxdb allocates them from 1 upward, so they never reach 2^63 - 1, and an id
above that (a valid u64 in a request) names nothing. Strings the API stores verbatim (tags, type ids,
idempotency keys, bundle ids, provenance) are ``bytea`` of their UTF-8: PostgreSQL's ``text`` cannot
hold U+0000, which JSON and LMDB accept, and answers must be identical on both backends.

Only portable SQL: tables, primary keys, unique constraints and plain or partial b-tree indexes; no
triggers, stored procedures, sequences, advisory locks or extensions (docs/scale-out.md).
"""

from __future__ import annotations

from typing import Any

from ...errors import FormatMismatch

__all__ = ["SCHEMA_VERSION", "TABLES", "ensure"]

SCHEMA_VERSION = 5

_COUNTERS = ("next_turn", "next_context", "turns", "contexts", "blobs", "blob_stored", "blob_raw", "dedup_hits",
             "dedup_misses", "bundles", "dicts", "dict_current", "next_event")
_EVENTS = """CREATE TABLE events (
        sequence bigint PRIMARY KEY,
        kind smallint NOT NULL,
        created_at_ms bigint NOT NULL,
        context_id bigint NOT NULL,
        a bigint NOT NULL,
        b bigint NOT NULL)"""
_HEADS = """CREATE TABLE head_history (
        context_id bigint NOT NULL,
        replaced_by_turn_id bigint NOT NULL,
        head_turn_id bigint NOT NULL,
        head_depth bigint NOT NULL,
        replaced_at_ms bigint NOT NULL,
        PRIMARY KEY (context_id, replaced_by_turn_id))"""
_AUTH = "CREATE TABLE auth_entries (name bytea PRIMARY KEY, value bytea NOT NULL)"
# Reclamation (cxdb.storage.postgres.lifecycle): deleted contexts whose history and keys remain, turns
# whose references fell to 0 (marked once their parent and blob no longer count them), blobs no turn
# names (refs = 0), and history and keys by age for expiry.
_LIFECYCLE = (
    "CREATE TABLE gc_contexts (context_id bigint PRIMARY KEY)",
    "CREATE TABLE gc_turns (turn_id bigint PRIMARY KEY, marked boolean NOT NULL DEFAULT false)",
    # Each step takes the oldest of one kind: without these it would read past the other kind's rows.
    "CREATE INDEX gc_turns_queued ON gc_turns (turn_id) WHERE NOT marked",
    "CREATE INDEX gc_turns_marked ON gc_turns (turn_id) WHERE marked",
    "CREATE INDEX blobs_unnamed ON blobs (content_hash) WHERE refs = 0",
    "CREATE INDEX head_history_by_age ON head_history (replaced_at_ms)",
    "CREATE INDEX idempotency_by_age ON idempotency (created_at_ms)",
)
# 4 -> 5: reference counts, computed from what is stored.
_REFS = (
    "ALTER TABLE turns ADD COLUMN refs bigint NOT NULL DEFAULT 0",
    "ALTER TABLE blobs ADD COLUMN refs bigint NOT NULL DEFAULT 0",
    """UPDATE turns t SET refs = r.n FROM (
        SELECT id, count(*) AS n FROM (
            SELECT parent_turn_id FROM turns WHERE parent_turn_id <> 0
            UNION ALL SELECT head_turn_id FROM contexts WHERE head_turn_id <> 0
            UNION ALL SELECT head_turn_id FROM head_history) AS holders(id)
        GROUP BY id) AS r WHERE t.turn_id = r.id""",
    """UPDATE blobs b SET refs = r.n FROM (SELECT content_hash, count(*) AS n FROM turns GROUP BY content_hash) AS r
       WHERE b.content_hash = r.content_hash""",
    *_LIFECYCLE,
)

_CREATE = (
    "CREATE TABLE cxdb_schema (singleton boolean PRIMARY KEY CHECK (singleton), version integer NOT NULL)",
    "CREATE TABLE counters (id smallint PRIMARY KEY CHECK (id = 1), "
    + ", ".join(f"{name} bigint NOT NULL DEFAULT 0" for name in _COUNTERS) + ")",
    "INSERT INTO counters (id) VALUES (1)",
    """CREATE TABLE contexts (
        context_id bigint PRIMARY KEY,
        head_turn_id bigint NOT NULL,
        head_depth bigint NOT NULL,
        created_at_ms bigint NOT NULL,
        last_activity_ms bigint NOT NULL,
        parent_context_id bigint,
        root_context_id bigint NOT NULL,
        fork_turn_id bigint,
        client_tag bytea,
        provenance bytea,
        children bigint NOT NULL DEFAULT 0)""",
    "CREATE INDEX contexts_by_activity ON contexts (last_activity_ms DESC, context_id DESC)",
    "CREATE INDEX contexts_by_tag ON contexts (client_tag, last_activity_ms DESC, context_id DESC) "
    "WHERE client_tag IS NOT NULL",
    "CREATE INDEX contexts_by_parent ON contexts (parent_context_id, context_id) WHERE parent_context_id IS NOT NULL",
    "CREATE TABLE tag_counts (client_tag bytea PRIMARY KEY, contexts bigint NOT NULL)",
    """CREATE TABLE turns (
        turn_id bigint PRIMARY KEY,
        parent_turn_id bigint NOT NULL,
        depth bigint NOT NULL,
        context_id bigint NOT NULL,
        created_at_ms bigint NOT NULL,
        jump_turn_id bigint NOT NULL,
        jump_depth bigint NOT NULL,
        type_id bytea NOT NULL,
        type_version bigint NOT NULL,
        encoding smallint NOT NULL,
        compression smallint NOT NULL,
        uncompressed_len bigint NOT NULL,
        content_hash bytea NOT NULL,
        refs bigint NOT NULL DEFAULT 0)""",
    "CREATE TABLE blobs (content_hash bytea PRIMARY KEY, stored bytea NOT NULL, refs bigint NOT NULL DEFAULT 0)",
    """CREATE TABLE idempotency (
        context_id bigint NOT NULL,
        idempotency_key bytea NOT NULL,
        turn_id bigint NOT NULL,
        created_at_ms bigint NOT NULL,
        request bytea NOT NULL,
        PRIMARY KEY (context_id, idempotency_key))""",
    """CREATE TABLE bundles (
        sequence bigint PRIMARY KEY,
        bundle_id bytea NOT NULL UNIQUE,
        published_at_ms bigint NOT NULL,
        body bytea NOT NULL)""",
    "CREATE TABLE dictionaries (dict_id bigint PRIMARY KEY, data bytea NOT NULL)",
    _EVENTS,
    _HEADS,
    _AUTH,
    *_LIFECYCLE,
    f"INSERT INTO cxdb_schema (singleton, version) VALUES (true, {SCHEMA_VERSION})",
)
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: the event log (it starts empty; what happened before has no events).
    1: ("ALTER TABLE counters ADD COLUMN next_event bigint NOT NULL DEFAULT 0", _EVENTS),
    # 2 -> 3: head history (it starts empty).
    2: (_HEADS,),
    # 3 -> 4: access control (the store's secret and its tokens; none yet).
    3: (_AUTH,),
    4: _REFS,
}
"""The statements that bring a schema of each older version to the next one."""

TABLES = ("cxdb_schema", "counters", "contexts", "tag_counts", "turns", "blobs", "idempotency", "bundles",
          "dictionaries", "events", "head_history", "auth_entries", "gc_contexts", "gc_turns")
"""Every table cxdb keeps, so tools (and tests) can name them."""


async def _version(conn: Any) -> int | None:
    present = await conn.fetchval("SELECT to_regclass('cxdb_schema') IS NOT NULL")
    if not present:
        return None
    return await conn.fetchval("SELECT version FROM cxdb_schema")  # type: ignore[no-any-return]


async def ensure(conn: Any, create: bool = True) -> str:
    """Check the schema version; with ``create``, create the schema when absent and bring an older one
    up to date. Says which: ``"created"``, ``"upgraded"`` or ``"current"``.

    Both run in one transaction, so a crash leaves the old schema whole, and two servers starting at
    once leave one schema: the loser's ``CREATE TABLE`` fails on the winner's committed table (then it
    checks again), and an upgrade locks the version row first.
    """
    version = await _version(conn)
    if version is None and create:
        try:
            async with conn.transaction():
                for statement in _CREATE:
                    await conn.execute(statement)
            return "created"
        except Exception:  # another server created it meanwhile: check what it made
            version = await _version(conn)
            if version is None:
                raise
    if version is None:
        raise FormatMismatch("the database holds no cxdb schema: run `cxdb migrate --store URL` first",
                             {"schema_version": None, "supported": SCHEMA_VERSION})
    if version in _MIGRATIONS and create:
        return await _upgrade(conn)
    if version != SCHEMA_VERSION:
        hint = "; run `cxdb migrate --store URL` to upgrade it" if version in _MIGRATIONS else ""
        raise FormatMismatch(f"the database has cxdb schema version {version}; this cxdb reads version "
                             f"{SCHEMA_VERSION}{hint}", {"schema_version": version, "supported": SCHEMA_VERSION})
    return "current"


async def _upgrade(conn: Any) -> str:
    async with conn.transaction():
        version = await conn.fetchval("SELECT version FROM cxdb_schema FOR UPDATE")
        if version == SCHEMA_VERSION:  # another server upgraded it while this one waited
            return "current"
        while version != SCHEMA_VERSION:
            for statement in _MIGRATIONS[version]:
                await conn.execute(statement)
            version += 1
        await conn.execute("UPDATE cxdb_schema SET version = $1", SCHEMA_VERSION)
    return "upgraded"
