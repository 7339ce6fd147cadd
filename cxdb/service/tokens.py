"""Access tokens: what a bearer token may do, and the records that say so.

A token reads ``cxdb_<id>_<secret>``: a 16-hex-digit id, which names it in lists, logs and
revocations, and 256 random bits. The store keeps only HMAC-SHA256 of the whole token under a
per-store secret (made once, by whichever process needs it first), compared in constant time, so
a copy of the store's files does not hold a usable token. A token may expire, and may be revoked;
records of revoked tokens stay, so ``token list`` shows them.

Each process checks a token against the store at most every :data:`REVALIDATE_SECONDS`, so a
revocation reaches every worker and every gateway within that time without a signal between them.

``CXDB_BOOTSTRAP_TOKEN`` gives an admin token of the operator's choosing at start-up (id
``bootstrap``): changing its value replaces that token, and a revoked bootstrap token stays
revoked while the value is the same.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..cache import LruCache
from ..errors import NotFound, Unprocessable
from ..model import ADMIN, READ, SCOPES, WRITE, allows, iso_utc
from ..storage import Backend

__all__ = ["ADMIN", "READ", "SCOPES", "WRITE", "Grant", "TokenRecord", "Tokens", "allows", "parse_duration"]

BOOTSTRAP_ID = "bootstrap"
REVALIDATE_SECONDS = 0.5
MAX_TOKENS = 10_000
MAX_NAME_CHARS = 200
MAX_NAMESPACE_BYTES = 400
_TOKEN = re.compile(r"cxdb_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_DURATION = re.compile(r"([0-9]{1,9})\s*(s|m|h|d)?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, None: 1}
CACHE_BYTES = 1024 * 1024


def parse_duration(value: Any, field: str) -> int:
    """Seconds, from a positive integer or text such as ``3600``, ``90m``, ``12h``, ``30d``."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = int(match[1]) * _UNITS[match[2]]
    else:
        raise Unprocessable(f"{field} must be seconds, or a number with s, m, h or d (30d)", {"field": field})
    if not 0 < seconds <= 100 * 365 * 86_400:
        raise Unprocessable(f"{field} must be above 0 and at most 100 years", {"field": field})
    return seconds


@dataclass(frozen=True, slots=True)
class Grant:
    """What the bearer of a valid token may do."""

    token_id: str
    scope: str
    namespace: str | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    scope: str
    namespace: str | None
    name: str | None
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    digest: bytes

    def dump(self) -> bytes:
        return orjson.dumps({"scope": self.scope, "namespace": self.namespace, "name": self.name,
                             "created_at_ms": self.created_at_ms, "expires_at_ms": self.expires_at_ms,
                             "revoked_at_ms": self.revoked_at_ms, "digest": self.digest.hex()})

    @classmethod
    def load(cls, token_id: str, raw: bytes) -> TokenRecord:
        value = orjson.loads(raw)
        return cls(token_id, value["scope"], value["namespace"], value["name"], value["created_at_ms"],
                   value["expires_at_ms"], value["revoked_at_ms"], bytes.fromhex(value["digest"]))

    def valid_at(self, now_ms: int) -> bool:
        return self.revoked_at_ms is None and (self.expires_at_ms is None or now_ms < self.expires_at_ms)

    def view(self, now_ms: int) -> dict[str, Any]:
        """As the API and the CLI show it: never the token, never its digest."""
        state = "revoked" if self.revoked_at_ms is not None else "active" if self.valid_at(now_ms) else "expired"
        return {"token_id": self.token_id, "name": self.name, "scope": self.scope, "namespace": self.namespace,
                "created_at": iso_utc(self.created_at_ms),
                "expires_at": iso_utc(self.expires_at_ms) if self.expires_at_ms is not None else None,
                "revoked_at": iso_utc(self.revoked_at_ms) if self.revoked_at_ms is not None else None,
                "state": state}


def _key(token_id: str) -> str:
    return "token:" + token_id


class Tokens:
    """The tokens of one store, and a short-lived cache of checks (per process)."""

    def __init__(self, store: Backend, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._secret: bytes | None = None
        self._checked: LruCache[bytes, tuple[TokenRecord | None, float]] = LruCache(CACHE_BYTES, lambda _: 400)

    async def secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self._store.put_auth_entry("secret", secrets.token_bytes(32), replace=False)
        return self._secret

    async def _digest(self, text: str) -> bytes:
        return hmac.new(await self.secret(), text.encode(), hashlib.sha256).digest()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def create(self, scope: str, namespace: str | None = None, expires_in: int | None = None,
                     name: str | None = None) -> tuple[str, TokenRecord]:
        """A new token: its text (to show once) and its record."""
        _check(scope, namespace, name)
        token_id = secrets.token_hex(8)
        text = f"cxdb_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.now_ms()
        record = TokenRecord(token_id, scope, namespace, name, now,
                             now + expires_in * 1000 if expires_in is not None else None, None,
                             await self._digest(text))
        await self._store.put_auth_entry(_key(token_id), record.dump(), replace=True)
        return text, record

    async def bootstrap(self, text: str) -> TokenRecord:
        """The admin token ``CXDB_BOOTSTRAP_TOKEN`` names (checked by :mod:`cxdb.config`): made, or
        replaced when its value changed."""
        digest = await self._digest(text)
        found = await self._record(BOOTSTRAP_ID)
        if found is not None and hmac.compare_digest(found.digest, digest):
            return found
        record = TokenRecord(BOOTSTRAP_ID, ADMIN, None, "CXDB_BOOTSTRAP_TOKEN", self.now_ms(), None, None, digest)
        await self._store.put_auth_entry(_key(BOOTSTRAP_ID), record.dump(), replace=True)
        return record

    async def _record(self, token_id: str) -> TokenRecord | None:
        raw = await self._store.auth_entry(_key(token_id))
        return TokenRecord.load(token_id, raw) if raw is not None else None

    async def list(self) -> list[TokenRecord]:
        found = [TokenRecord.load(name[len("token:"):], raw)
                 for name, raw in await self._store.auth_entries("token:", MAX_TOKENS)]
        return sorted(found, key=lambda record: (record.created_at_ms, record.token_id))

    async def get(self, token_id: str) -> TokenRecord:
        record = await self._record(token_id) if len(token_id) <= 64 else None
        if record is None:
            raise NotFound(f"No token {token_id}", {"token_id": token_id})
        return record

    async def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token (again is a no-op); NotFound for an unknown id."""
        record = await self.get(token_id)
        if record.revoked_at_ms is None:
            record = replace(record, revoked_at_ms=self.now_ms())
            await self._store.put_auth_entry(_key(token_id), record.dump(), replace=True)
        return record

    async def verify(self, text: str) -> Grant | None:
        """The grant of a valid token; None for one that is unknown, wrong, expired or revoked."""
        if not text or len(text) > 512:
            return None
        digest = await self._digest(text)
        now = self._monotonic()
        cached = self._checked.get(digest)
        if cached is not None and now - cached[1] < REVALIDATE_SECONDS:
            record = cached[0]
        else:
            match = _TOKEN.fullmatch(text)
            record = await self._record(match[1] if match else BOOTSTRAP_ID)
            self._checked.put(digest, (record, now))
        if record is None or not hmac.compare_digest(record.digest, digest) or not record.valid_at(self.now_ms()):
            return None
        return Grant(record.token_id, record.scope, record.namespace)


def _check(scope: str, namespace: str | None, name: str | None) -> None:
    if scope not in SCOPES:
        raise Unprocessable(f"scope must be one of {', '.join(SCOPES)}", {"field": "scope", "value": scope})
    if namespace is not None:
        if scope == ADMIN:
            raise Unprocessable("an admin token sees the whole store: it takes no namespace", {"field": "namespace"})
        if not namespace or len(namespace.encode()) > MAX_NAMESPACE_BYTES:
            raise Unprocessable(f"namespace must be a client_tag prefix of 1 to {MAX_NAMESPACE_BYTES} bytes",
                                {"field": "namespace"})
    if name is not None and (len(name) > MAX_NAME_CHARS or not name.isprintable()):
        raise Unprocessable(f"name must be printable, at most {MAX_NAME_CHARS} characters", {"field": "name"})
