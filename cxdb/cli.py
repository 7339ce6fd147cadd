"""The ``cxdb`` command: ``serve``, ``check``, ``backup``, ``migrate``, ``token``; ``export``,
``import`` and ``copy`` (:mod:`cxdb.cli_portable`); ``gc`` and ``compact`` (:mod:`cxdb.cli_lifecycle`).

Settings are built here, once, from flags and the environment, and passed down.
A mistake in a setting is one line naming it and exit status 2; a refusal from
the environment (no space, a directory that cannot be created, a port in use) is
one line and exit status 1. Only ``serve`` and ``migrate`` create a store: ``check`` and
``backup`` open an existing one, read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import faulthandler
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from . import __version__, cli_lifecycle, cli_portable
from .config import Settings, add_arguments, is_database_url, settings_from, shown_store
from .errors import CxdbError
from .logs import configure as configure_logging
from .model import SCOPES

__all__ = ["main"]

log = logging.getLogger("cxdb")
AUDIT = logging.getLogger("cxdb.audit")
_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


class _Refused(Exception):
    """A command refused before it started: one line for the user, and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxdb", description="cxdb: an AI context store.")
    parser.add_argument("--version", action="version", version=f"cxdb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Run the HTTP server.")
    add_arguments(serve)
    check = commands.add_parser("check", help="Verify the integrity of a store (read-only).")
    _store_argument(check)
    backup = commands.add_parser("backup", help="Copy a live LMDB store, consistently, into a new directory.")
    backup.add_argument("destination", type=Path, help="A directory that does not exist yet.")
    _store_argument(backup)
    migrate = commands.add_parser("migrate", help="Create a store's schema, or check the one it has.")
    _store_argument(migrate)
    token = commands.add_parser("token", help="Create, list and revoke access tokens (works while a server runs).")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="Make a token and print it, once.")
    create.add_argument("--scope", required=True, choices=SCOPES, help="What the token may do.")
    create.add_argument("--namespace", default=None,
                        help="A client_tag prefix: the token sees only contexts whose tag starts with it.")
    create.add_argument("--expires", default=None, help="Lifetime: seconds, or 90m, 12h, 30d (default: never).")
    create.add_argument("--name", default=None, help="A label for lists and logs.")
    _store_argument(create)
    listing = actions.add_parser("list", help="Every token, as JSON (never the tokens themselves).")
    _store_argument(listing)
    revoke = actions.add_parser("revoke", help="Revoke a token: every server refuses it within a second.")
    revoke.add_argument("token_id")
    _store_argument(revoke)
    cli_portable.add_commands(commands, _store_argument)
    cli_lifecycle.add_commands(commands, _store_argument)
    return parser


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", "--data-dir", dest="store", default=None,
                        help="A directory (LMDB) or a postgresql:// URL [CXDB_STORE, CXDB_DATA_DIR]")


def _prepare_data_dir(path: Path) -> bool:
    """Make sure ``path`` can hold a store; True when it holds none yet."""
    if path.exists() and not path.is_dir():
        raise _Refused(f"--store: {path.resolve()} is not a directory", 2)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Refused(f"cannot create the data directory {path.resolve()}: {exc.strerror}", 1) from exc
    return not (path / "data.mdb").exists()


def _resolve_host(settings: Settings) -> None:
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise _Refused(f"--host: cannot resolve {settings.host!r}: {exc.strerror}", 2) from exc


def _serve_command(settings: Settings) -> int:
    from .serve import raise_fd_limit, serve
    from .storage import migrate

    _resolve_host(settings)
    if is_database_url(settings.store):
        new_store = asyncio.run(migrate(settings)) == "created"  # the schema, before any worker starts
    else:
        new_store = _prepare_data_dir(Path(settings.store))
        if settings.workers > 1:  # open it once here: a store that cannot be opened is one line, not N tracebacks
            asyncio.run(migrate(settings))
    raise_fd_limit()
    try:
        return serve(settings, new_store)
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        raise _Refused(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}", 1) from exc


async def _token_command(args: argparse.Namespace, settings: Settings) -> int:
    from .service.tokens import Tokens, parse_duration
    from .storage import migrate, open_backend

    if args.action == "create":
        expires = parse_duration(args.expires, "--expires") if args.expires is not None else None
        await migrate(settings)  # the first token may come before the first `serve`
    elif not is_database_url(settings.store) and not (Path(settings.store) / "data.mdb").exists():
        raise _Refused(f"no cxdb store at {Path(settings.store).resolve()}", 1)
    backend = open_backend(settings)
    await backend.start()
    try:
        tokens = Tokens(backend)
        if args.action == "create":
            text, record = await tokens.create(args.scope, args.namespace, expires, args.name)
            AUDIT.warning("token_created via cli %s scope=%s", record.token_id, record.scope,
                          extra={"event": "token_created", "subject": record.token_id, "scope": record.scope})
            print(text)
            print(f"cxdb: token {record.token_id} ({record.scope}"
                  f"{', namespace ' + repr(record.namespace) if record.namespace else ''}): it is shown only once",
                  file=sys.stderr)
        elif args.action == "list":
            now = tokens.now_ms()
            print(orjson.dumps([record.view(now) for record in await tokens.list()],
                               option=orjson.OPT_INDENT_2).decode())
        else:
            record = await tokens.revoke(args.token_id)
            AUDIT.warning("token_revoked via cli %s", record.token_id,
                          extra={"event": "token_revoked", "subject": record.token_id})
            print(f"revoked token {record.token_id}")
        return 0
    finally:
        await backend.close()


def _store_command(args: argparse.Namespace, settings: Settings) -> int:
    from .storage import Store, check, migrate

    if args.command == "token":
        return asyncio.run(_token_command(args, settings))
    if args.command in cli_portable.COMMANDS:
        return cli_portable.run(args, settings)
    if args.command in cli_lifecycle.COMMANDS:
        return cli_lifecycle.run(args, settings)
    if args.command == "check":
        report = asyncio.run(check(settings))
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0 if report["ok"] else 1
    if args.command == "migrate":
        outcome = asyncio.run(migrate(settings))
        said = {"created": "created a new store in", "upgraded": "upgraded the store in",
                "current": "the store is current:"}
        print(f"{said[outcome]} {shown_store(settings.store)}")
        return 0
    if is_database_url(settings.store):
        raise _Refused("backup copies an LMDB store; back up PostgreSQL with pg_dump or point-in-time recovery "
                       "(docs/scale-out.md)", 2)
    with Store(settings.store, map_size=settings.map_size, readonly=True) as store:
        try:
            store.backup(args.destination)
        except FileExistsError as exc:
            raise _Refused(f"backup: {args.destination} exists already", 1) from exc
        print(f"backed up {settings.store} to {args.destination}")
        return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``cxdb`` console script."""
    faulthandler.enable()  # a fatal signal (SIGBUS, SIGSEGV) leaves a trace on stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        settings = settings_from(args, env)
    except ValueError as exc:
        print(f"cxdb: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            return _serve_command(settings)
        return _store_command(args, settings)
    except _Refused as exc:
        print(f"cxdb: {exc}", file=sys.stderr)
        return exc.status
    except CxdbError as exc:
        print(f"cxdb: {exc.message}", file=sys.stderr)
        return 1
