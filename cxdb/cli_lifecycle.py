"""``cxdb gc`` and ``cxdb compact`` (docs/operations.md).

``gc`` runs one lifecycle pass to the end, with the server running or stopped: expiry of head history
and idempotency keys, retention when asked for, then reclamation until nothing is left. It prints
what it did as JSON. ``compact`` shrinks a stopped LMDB store's file to what it holds.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from .config import SETTINGS, Settings, add_arguments, is_database_url
from .errors import StoreError

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("gc", "compact")
_LIFECYCLE_SETTINGS = ("retain_days", "retain", "head_history_days", "idempotency_ttl")


def add_commands(commands: Any, store_argument: Any) -> None:
    gc = commands.add_parser("gc", help="Expire, apply retention, and reclaim what nothing reaches, to the end.")
    store_argument(gc)
    add_arguments(gc, [setting for setting in SETTINGS if setting.name in _LIFECYCLE_SETTINGS])
    compact = commands.add_parser("compact", help="Shrink a stopped LMDB store's file to what it holds.")
    store_argument(compact)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "gc":
        report = asyncio.run(_gc(settings))
    else:
        from .storage import compact

        report = compact(settings)
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


async def _gc(settings: Settings) -> dict[str, Any]:
    from .service.events import Changes
    from .service.lifecycle import Lifecycle
    from .storage import migrate, open_backend

    if not is_database_url(settings.store):
        if not (Path(settings.store) / "data.mdb").exists():
            raise StoreError(f"no cxdb store at {Path(settings.store).resolve()}")
        await migrate(settings)  # an older store gains its reference counts first
    backend = open_backend(settings, create=False)  # PostgreSQL: a schema to upgrade is `cxdb migrate`'s
    await backend.start()
    try:
        lifecycle = Lifecycle(backend, settings, Changes(backend))
        done = await lifecycle.maintain()
        freed = done.pop("freed")
        return {**done, "freed": {"contexts": freed.contexts, "turns": freed.turns, "blobs": freed.blobs,
                                  "bytes": freed.bytes},
                "reclaiming": await lifecycle.pending()}
    finally:
        await backend.close()
