"""Settings: one table of name, default and help, one frozen object built from it.

The CLI builds :class:`Settings` once from flags and an environment mapping it
is handed, and passes it down. No other module reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BOOTSTRAP_ENV", "SETTINGS", "Rate", "Setting", "Settings", "add_arguments", "is_database_url",
           "is_loopback", "settings_from", "shown_store", "span"]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _origins(text: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    return items or ("*",)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be positive: {text!r}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86_400:
        raise ValueError(f"must be a number of seconds above 0 and at most 86400: {text!r}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}: {text!r}")
    return lowered


LOG_FORMATS = ("text", "json")


def _log_format(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}: {text!r}")
    return lowered


def _on_off(text: str) -> bool:
    """A switch given a value (``--access-log off``), unlike the flag pairs of :func:`_bool`."""
    return _bool(text)


def _map_size(text: str) -> int:
    value = int(text)
    if value < 1 << 20:
        raise ValueError(f"must be at least 1048576 (1 MiB): {text!r}")
    return value


STORE_SCHEMES = ("postgresql://", "postgres://")


def _store(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must be a directory or a postgresql:// URL")
    return value


def is_database_url(store: str) -> bool:
    """True when ``store`` names a PostgreSQL database rather than an LMDB directory."""
    return store.startswith(STORE_SCHEMES)


def shown_store(store: str) -> str:
    """``store`` as logs may show it: a URL without its password, a directory as an absolute path."""
    if not is_database_url(store):
        return str(Path(store).resolve())
    scheme, _, rest = store.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"


def _duration(text: str) -> float:
    value = float(text)
    if not 0 < value <= 10 * 365 * 86_400:
        raise ValueError(f"must be a number of seconds above 0 and at most ten years: {text!r}")
    return value


_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
TEN_YEARS = 10 * 365 * 86_400


def span(text: str) -> float:
    """Seconds from ``7d``, ``24h``, ``30m``, ``90s`` or a plain number of seconds; above 0, at most
    ten years."""
    cleaned = text.strip().lower()
    unit = _SPAN_UNITS.get(cleaned[-1:], 0) if cleaned else 0
    number = cleaned[:-1] if unit else cleaned
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"must be a duration such as 7d, 24h, 30m or 90s: {text!r}") from None
    if not 0 < value <= TEN_YEARS:
        raise ValueError(f"must be a duration above 0 and at most ten years: {text!r}")
    return value


def _days(text: str) -> float | None:
    """Days (``off`` for none) as seconds."""
    if text.strip().lower() in ("", "off"):
        return None
    return span(text.strip() + ("d" if text.strip()[-1:].isdigit() else ""))


def _idempotency_ttl(text: str) -> float:
    value = span(text)
    if value < 86_400:
        raise ValueError(f"must be at least 24h, as the API promises: {text!r}")
    return value


def _retain(text: str) -> tuple[tuple[str, float], ...]:
    """``prefix=span`` rules, comma-separated: ``runs/=7d,eval/=30d``."""
    rules: list[tuple[str, float]] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        prefix, equals, duration = part.rpartition("=")
        if not equals or not prefix:
            raise ValueError(f"each rule is PREFIX=DURATION, e.g. runs/=7d: {part!r}")
        rules.append((prefix, span(duration)))
    if len({prefix for prefix, _ in rules}) != len(rules):
        raise ValueError(f"a prefix is given twice: {text!r}")
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``seconds`` (1 or 60)."""

    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        return f"{self.count}/{'s' if self.seconds == 1 else 'min'}"


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0}


def _rate(text: str) -> Rate | None:
    lowered = text.strip().lower()
    if lowered in ("", "off"):
        return None
    number, _, unit = lowered.partition("/")
    if unit not in _RATE_UNITS or not number.isdigit() or not 0 < int(number) <= 10**9:
        raise ValueError(f"must be N/s or N/min (N from 1), or off: {text!r}")
    return Rate(int(number), _RATE_UNITS[unit])


def _auth(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in ("off", "tokens"):
        raise ValueError(f"must be off or tokens: {text!r}")
    return lowered


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"not a port: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    alias: str | None = None
    """An older name the setting still answers to, as a flag and in the environment."""
    shown: str | None = None
    """The default as the flag takes it, where that differs from the value kept."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "CXDB_" + self.name.upper()

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag,) if self.alias is None else (self.flag, "--" + self.alias.replace("_", "-"))

    @property
    def envs(self) -> tuple[str, ...]:
        return (self.env,) if self.alias is None else (self.env, "CXDB_" + self.alias.upper())


SETTINGS: tuple[Setting, ...] = (
    Setting("store", "cxdb-data", _store,
            "Where the data lives: a directory for the embedded LMDB store, or a postgresql:// URL.",
            alias="data_dir"),
    Setting("pool_size", 16, _positive, "PostgreSQL connections each server process keeps at most."),
    Setting("host", "127.0.0.1", str, "Address the HTTP server binds."),
    Setting("port", 9010, _port, "Port the HTTP server binds; 0 picks a free port."),
    Setting("auth", "off", _auth,
            "Access control: tokens (every route but the open ones needs a bearer token) or off. When not "
            "given: tokens if --host is not a loopback address, else off."),
    Setting("require_registry", False, _bool, "Reject appends of unregistered types with 412."),
    Setting("cors_origins", ("*",), _origins, "Comma-separated CORS allowlist; * allows every origin."),
    Setting("max_body_bytes", 16 * 1024 * 1024, _positive, "Largest request body accepted; larger gets 413."),
    Setting("max_json_depth", 64, _positive, "Deepest JSON nesting accepted in a body; deeper gets 422."),
    Setting("max_json_items", 1_000_000, _positive,
            "Most JSON values (objects, arrays, scalars) accepted in one body; more gets 422."),
    Setting("max_page_bytes", 16 * 1024 * 1024, _positive,
            "Byte budget of one page of turns: a page stops before the turn that would pass it "
            "(one turn is always sent) and its cursor continues from there."),
    Setting("map_size", 1 << 33, _map_size, "Initial LMDB map size in bytes (at least 1 MiB); it grows when full."),
    Setting("max_batch", 512, _positive, "Most write operations committed in one group-commit transaction."),
    Setting("workers", 1, _positive, "Server processes sharing the port (SO_REUSEPORT) and the store."),
    Setting("header_timeout", 30.0, _seconds,
            "Seconds a request's head may take to arrive, from its first byte or the connection's start."),
    Setting("body_timeout", 60.0, _seconds,
            "Seconds a request body may go without progress; a slow upload that keeps sending survives."),
    Setting("send_timeout", 60.0, _seconds,
            "Seconds a response may wait in a connection's buffer without the client reading any of it."),
    Setting("idle_timeout", 75.0, _seconds, "Seconds an idle keep-alive connection stays open."),
    Setting("shutdown_grace", 5.0, _seconds,
            "On SIGTERM/SIGINT, seconds requests already received get to finish; a second signal exits at once."),
    Setting("event_retention", 604_800.0, _duration,
            "Seconds events are kept for streams to resume from; older ones are pruned (default 7 days)."),
    Setting("retain_days", None, _days,
            "Delete contexts whose last activity is older than this many days (off by default); forks of a "
            "deleted context keep their turns.", shown="off"),
    Setting("retain", (), _retain,
            "Per tag prefix, how long contexts are kept after their last activity: 'runs/=7d,eval/=30d' "
            "(the longest matching prefix decides; --retain-days covers the rest).", shown="none"),
    Setting("head_history_days", 30 * 86_400.0, _days,
            "Days a replaced head keeps its turns reachable in the head history; off keeps them forever.",
            shown="30"),
    Setting("idempotency_ttl", 7 * 86_400.0, _idempotency_ttl,
            "How long an idempotency key is remembered (at least 24h): 7d, 48h, or seconds.", shown="7d"),
    Setting("gc", True, _on_off,
            "Reclaim deleted and expired data in the background: on or off (then `cxdb gc` does it)."),
    Setting("event_heartbeat", 15.0, _seconds, "Seconds between heartbeat comments on an idle event stream."),
    Setting("max_streams", 1000, _positive, "Most event streams one server process serves at once; more get 503."),
    Setting("rate_limit", None, _rate,
            "Requests each client may send: N/s or N/min, a token bucket (per token, or per client address when "
            "auth is off; per process); "
            "off by default."),
    Setting("rate_burst", None, _positive, "Requests a client may send at once under --rate-limit (default: N)."),
    Setting("metrics", True, _on_off, "Serve Prometheus metrics at /metrics: on or off."),
    Setting("metrics_dir", None, Path,
            "Directory for the metrics files the workers share (emptied at start-up); default: a fresh "
            "temporary directory, removed at exit."),
    Setting("log_level", "info", _log_level, "Logging level: debug, info, warning or error."),
    Setting("log_format", "text", _log_format, "Log lines as text, or as JSON objects (one per line)."),
    Setting("access_log", True, _on_off, "One log line per request: on or off."),
    Setting("slow_request_ms", 1000, _positive,
            "Requests that take this many milliseconds or more are logged at warning level, access log or not."),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a cxdb server, frozen once built."""

    store: str = "cxdb-data"
    pool_size: int = 16
    host: str = "127.0.0.1"
    port: int = 9010
    auth: str = "off"
    require_registry: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_json_items: int = 1_000_000
    max_page_bytes: int = 16 * 1024 * 1024
    map_size: int = 1 << 33
    max_batch: int = 512
    workers: int = 1
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    idle_timeout: float = 75.0
    shutdown_grace: float = 5.0
    event_retention: float = 604_800.0
    retain_days: float | None = None
    """Seconds, despite the name (the flag takes days)."""
    retain: tuple[tuple[str, float], ...] = ()
    head_history_days: float | None = 30 * 86_400.0
    """Seconds, despite the name (the flag takes days)."""
    idempotency_ttl: float = 7 * 86_400.0
    gc: bool = True
    event_heartbeat: float = 15.0
    max_streams: int = 1000
    rate_limit: Rate | None = None
    rate_burst: int | None = None
    metrics: bool = True
    metrics_dir: Path | None = None
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = True
    slow_request_ms: int = 1000
    bootstrap_token: str | None = dataclasses.field(default=None, repr=False)
    """``CXDB_BOOTSTRAP_TOKEN``: an admin token made at start-up. Never logged."""

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting] = SETTINGS) -> None:
    """Add one flag per setting; unset flags fall back to the environment, then the default."""
    for setting in settings:
        if setting.parse is _bool:  # --name and --no-name, so a flag can override the environment either way
            parser.add_argument(*setting.flags, dest=setting.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{setting.help} [{setting.env}]")
        else:
            shown = setting.shown or _show(setting.default)
            parser.add_argument(*setting.flags, dest=setting.name, default=None,
                                help=f"{setting.help} (default: {shown}) [{setting.env}]")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def settings_from(args: argparse.Namespace | None, environ: Mapping[str, str],
                  names: Sequence[str] | None = None) -> Settings:
    """Build Settings: a flag wins over the environment, which wins over the default.

    Raises ValueError naming the setting when a value does not parse.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if names is not None and setting.name not in names:
            continue
        raw = getattr(args, setting.name, None) if args is not None else None
        source = setting.flag
        for env in setting.envs:
            if raw is not None:
                break
            raw = environ.get(env)
            source = env
        if raw is None:
            continue
        if isinstance(raw, bool):  # from --name / --no-name
            values[setting.name] = raw
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc
    if (names is None or "auth" in names) and "auth" not in values:
        values["auth"] = "off" if is_loopback(values.get("host", "127.0.0.1")) else "tokens"
    bootstrap = environ.get(BOOTSTRAP_ENV) if names is None else None
    if bootstrap:
        if len(bootstrap) < 32 or not bootstrap.isascii() or not bootstrap.isprintable() or " " in bootstrap:
            raise ValueError(f"{BOOTSTRAP_ENV}: must be at least 32 printable ASCII characters without spaces")
        values["bootstrap_token"] = bootstrap
    return Settings(**values)


BOOTSTRAP_ENV = "CXDB_BOOTSTRAP_TOKEN"
