"""``cxdb export``, ``cxdb import`` and ``cxdb copy`` (docs/export-format.md, docs/operations.md).

Each streams: memory does not grow with the store. On a terminal, a progress bar on stderr shows
turns/s and the time left; it is quiet when stderr is not a terminal. Results go to stderr as one line
(``export`` writes the export itself to stdout or ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
from tqdm import tqdm

from .config import Settings, is_database_url, shown_store
from .model import parse_u64
from .portable import BadExport, Compressor, Selection, file_chunks, import_lines, verify
from .portable.stream import header_of

if TYPE_CHECKING:
    from .service import Service

__all__ = ["add_commands", "run"]

COMMANDS = ("export", "import", "copy")


def add_commands(commands: Any, store_argument: Any) -> None:
    """Add the three commands to the ``cxdb`` parser's subcommands."""
    out = commands.add_parser("export", help="Write a store, or some of its contexts, as an export (JSON Lines).")
    store_argument(out)
    out.add_argument("--context", dest="contexts", action="append", default=[], metavar="ID",
                     help="Export this context (repeat for more); default: every context.")
    out.add_argument("--tag-prefix", default=None, help="Export the contexts whose client_tag starts with this.")
    out.add_argument("--output", "-o", type=Path, default=None,
                     help="Write here instead of stdout; a name ending in .zst is compressed with zstd.")
    out.add_argument("--zstd", action="store_true", help="Compress with zstd (the default for a .zst output).")
    into = commands.add_parser("import", help="Read an export (plain or .zst) into a store.")
    store_argument(into)
    into.add_argument("file", help="The export to read; - reads stdin.")
    _import_options(into)
    copy = commands.add_parser("copy", help="Copy one store into another (LMDB and PostgreSQL either way), verified.")
    copy.add_argument("--from", dest="store", required=True, help="The store to copy (a directory or URL).")
    copy.add_argument("--to", dest="target", required=True, help="The store to copy into (created if need be).")
    copy.add_argument("--verify", choices=("sample", "full"), default="sample",
                      help="Compare totals and 64 contexts spread over the store (sample), or every context.")
    _import_options(copy)


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preserve-ids", action="store_true",
                        help="Keep the export's ids in a store that holds data (refused where one collides).")
    parser.add_argument("--id-map", type=Path, default=None,
                        help="Where to write how ids were mapped, when they were (default: beside the file).")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_COMMANDS[args.command](args, settings))


def _service(settings: Settings) -> Service:
    # Imported here: the service brings in the metrics library, which reads its multiprocess setting
    # when first imported, and `cxdb serve` sets that up after the command line is parsed.
    from .service import Service

    return Service(settings)


def _bar(total: int | None, what: str) -> tqdm[Any]:
    return tqdm(total=total, unit=" turns", unit_scale=True, desc=what, file=sys.stderr, disable=None,
                dynamic_ncols=True, smoothing=0.1)


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    if not is_database_url(settings.store) and not (Path(settings.store) / "data.mdb").exists():
        print(f"cxdb: no cxdb store at {Path(settings.store).resolve()}", file=sys.stderr)
        return 1
    try:
        contexts = [parse_u64(c) for c in args.contexts]
    except ValueError:
        print(f"cxdb: --context: not an id: {args.contexts}", file=sys.stderr)
        return 2
    selection = Selection(tuple(contexts), args.tag_prefix)
    compress = args.zstd or (args.output is not None and args.output.name.endswith(".zst"))
    async with _service(settings) as service:
        stats = await service.store.stats()
        everything = not contexts and args.tag_prefix is None
        lines = service.portability.export_lines(selection)
        first = await anext(lines)  # a context named that does not exist is refused before any file is made
        target: BinaryIO = open(args.output, "wb") if args.output is not None else sys.stdout.buffer  # noqa: SIM115
        try:
            with _bar(stats.turns if everything else None, "export") as bar:
                written = await _write(first, lines, target, Compressor(compress), bar)
        finally:
            if args.output is not None:
                target.close()
    print(f"cxdb: exported {written[0]} contexts and {written[1]} turns", file=sys.stderr)
    return 0


async def _write(first: bytes, records: AsyncIterator[bytes], target: BinaryIO, compressor: Compressor,
                 bar: tqdm[Any]) -> tuple[int, int]:
    contexts = turns = 0
    target.write(compressor.feed(first))
    async for line in records:
        if line.startswith(b'{"kind":"turn"'):
            turns += 1
            bar.update(1)
        elif line.startswith(b'{"kind":"head"'):
            contexts += 1
        target.write(compressor.feed(line))
    target.write(compressor.finish())
    target.flush()
    return contexts, turns


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    try:
        source: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"cxdb: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    _make_directory(settings.store)
    total = _expected_turns(args.file)
    try:
        async with _service(settings) as service:
            with _bar(total, "import") as bar:
                report = await service.portability.import_chunks(
                    file_chunks(source), preserve=True if args.preserve_ids else None, progress=bar.update)
    except BadExport as exc:
        print(f"cxdb: {args.file}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    _write_map(report.id_map, args.id_map, args.file)
    print(f"cxdb: {report.summary()}", file=sys.stderr)
    return 0


async def _copy(args: argparse.Namespace, settings: Settings) -> int:
    target_settings = dataclasses.replace(settings, store=args.target)
    _make_directory(args.target)
    async with _service(settings) as origin, _service(target_settings) as service:
        stats = await origin.store.stats()
        with _bar(stats.turns, "copy") as bar:
            report = await import_lines(service, origin.portability.export_lines(Selection()),
                                        preserve=True if args.preserve_ids else None, progress=bar.update)
        _write_map(report.id_map, args.id_map, "cxdb-copy")
        print(f"cxdb: {report.summary()}", file=sys.stderr)
        checked = await verify(origin, service, full=args.verify == "full")
    print(orjson.dumps(checked, option=orjson.OPT_INDENT_2).decode())
    if not checked["ok"]:
        print(f"cxdb: the copy in {shown_store(args.target)} differs from its source", file=sys.stderr)
        return 1
    return 0


def _write_map(id_map: dict[str, Any], path: Path | None, beside: str) -> None:
    if id_map.get("same", True):
        return
    where = path or Path(f"{'cxdb-import' if beside == '-' else beside}.idmap.json")
    where.write_bytes(orjson.dumps(id_map, option=orjson.OPT_INDENT_2))
    print(f"cxdb: the ids were mapped to fresh ones; the map is in {where}", file=sys.stderr)


def _expected_turns(path: str) -> int | None:
    """The turns the export's header announces (None for stdin, or without a count)."""
    header = header_of(path) if path != "-" else None
    turns = header.get("turns") if header is not None else None
    return turns if isinstance(turns, int) else None


def _make_directory(store: str) -> None:
    if not is_database_url(store):
        Path(store).mkdir(parents=True, exist_ok=True)


_COMMANDS = {"export": _export, "import": _import, "copy": _copy}
