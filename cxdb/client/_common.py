"""What the sync and async clients share: records, query building, error mapping."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..errors import CxdbError, TransportError, Unprocessable, error_class

__all__ = ["EventParser", "Rebase", "Record", "StreamPlan", "Turn", "bundle_body", "error_from", "events_plan",
           "follow_item", "follow_plan", "needs_head", "query", "quote_id", "to_record", "transport_error",
           "turn_body"]

class Record(dict[str, Any]):
    """A JSON object that also allows attribute access: ``ctx.context_id``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


TOKEN_ENV = "CXDB_TOKEN"


def base_headers(headers: Any, token: str | None) -> dict[str, str]:
    """Every request's headers: JSON, and the bearer token given, or else ``CXDB_TOKEN``'s."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    base = {"Accept": "application/json"}
    if token:
        base["Authorization"] = f"Bearer {token}"
    return {**base, **(headers or {})}


def to_record(value: Any) -> Any:
    if isinstance(value, dict):
        return Record({key: to_record(item) for key, item in value.items()})
    if isinstance(value, list):
        return [to_record(item) for item in value]
    return value


def error_from(status: int, body: bytes) -> CxdbError:
    """The typed exception for an error response, from its envelope when it has one."""
    klass = error_class(status, CxdbError)
    try:
        envelope = orjson.loads(body)["error"]
        return klass(str(envelope["message"]), dict(envelope.get("details") or {}), status=status,
                     code=str(envelope["code"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        text = body[:200].decode(errors="replace")
        return klass(f"HTTP {status}: {text}", {}, status=status)


def transport_error(base_url: str, cause: BaseException | None, sent: bool) -> TransportError:
    """What went wrong talking to the server, and whether the request may have been applied."""
    reason = str(cause) or type(cause).__name__
    if not sent:
        return TransportError(f"cannot reach {base_url}: {reason}", {"reason": reason, "request_sent": False})
    return TransportError(f"the connection to {base_url} failed after the request was sent, so it may or may "
                          f"not have been applied: {reason}", {"reason": reason, "request_sent": True})


def query(**params: Any) -> str:
    """A query string of the parameters that are set; booleans as true/false."""
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


def quote_id(value: Any) -> str:
    return quote(str(value), safe="")


def turn_body(turn: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    body = dict(turn or {})
    body.update({key: value for key, value in fields.items() if value is not None})
    return body


def bundle_body(bundle: dict[str, Any] | str | os.PathLike[str]) -> tuple[str, bytes]:
    """(bundle_id, body) from a dict or the path of a JSON file."""
    if isinstance(bundle, dict):
        raw = orjson.dumps(bundle)
        value = bundle
    else:
        with open(bundle, "rb") as handle:
            raw = handle.read()
        value = orjson.loads(raw)
    bundle_id = value.get("bundle_id") if isinstance(value, dict) else None
    if not isinstance(bundle_id, str):
        raise Unprocessable("the bundle has no bundle_id", {"field": "bundle_id"})
    return bundle_id, raw


class Turn(Record):
    """A turn from :meth:`cxdb.Client.follow`, exactly as a page renders it."""


class Rebase(Record):
    """From :meth:`cxdb.Client.follow`: the context's head moved away from the turns yielded so far.
    Drop those after ``common_ancestor_turn_id`` (all of them when it is ``"0"``); the turns from
    there to the new head follow."""


class StreamPlan:
    """Where a stream (re)connects: the first request asks for its start point in the query; each
    later one resumes after the last id seen with ``Last-Event-ID``."""

    def __init__(self, path: str, pairs: list[tuple[str, str]], start: list[tuple[str, str]],
                 last: str | None = None) -> None:
        self._path = path
        self._pairs = pairs
        self._start = start
        self.last = last

    def request(self) -> tuple[str, dict[str, str]]:
        headers = {"Accept": "text/event-stream"}
        pairs = self._pairs
        if self.last is not None:
            headers["Last-Event-ID"] = self.last
        else:
            pairs = pairs + self._start
        return self._path + ("?" + urlencode(pairs) if pairs else ""), headers

    def seen(self, event: Record) -> None:
        if event.id is not None:
            self.last = event.id


def events_plan(after: int | str | None, context_ids: tuple[int | str, ...] | list[int | str],
                kinds: tuple[str, ...] | list[str]) -> StreamPlan:
    """``GET /v1/events`` after sequence ``after``."""
    pairs = [("context_id", str(context_id)) for context_id in context_ids]
    if kinds:
        pairs.append(("events", ",".join(kinds)))
    return StreamPlan("/v1/events", pairs, [], None if after is None else str(after))


def follow_plan(context_id: int | str, after_turn_id: int | str | None, tail: int | None,
                options: dict[str, Any], head: str | None = None) -> StreamPlan:
    """``GET /v1/contexts/{id}/follow`` after a turn (or the newest ``tail``, or resuming after
    ``head``), rendered with ``options``."""
    pairs = [(key, str(value).lower() if isinstance(value, bool) else str(value))
             for key, value in options.items() if value is not None]
    start = [("after_turn_id", str(after_turn_id))] if after_turn_id is not None else []
    if tail:
        start.append(("tail", str(tail)))
    return StreamPlan(f"/v1/contexts/{quote_id(context_id)}/follow", pairs, start, head)


def needs_head(after_turn_id: int | str | None, tail: int | None) -> bool:
    """A follow with no start point starts at the head as it is now, read first, so that a drop before
    the first turn resumes from there too."""
    return after_turn_id is None and not tail


def follow_item(event: Record) -> Turn | Rebase | None:
    if event.event == "turn":
        return Turn(event.data)
    if event.event == "rebase":
        return Rebase(event.data)
    return None


class EventParser:
    """Server-Sent Events, a line at a time: :meth:`feed` returns each complete event as a
    :class:`Record` (``event``, ``id``, ``data`` parsed from JSON) and keeps the server's ``retry``."""

    def __init__(self) -> None:
        self.retry = 1.0
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Record | None:
        line = line.rstrip("\r\n")
        if not line:
            fields, self._fields = self._fields, {}
            if "data" not in fields:
                return None
            return Record(event=fields.get("event", "message"), id=fields.get("id"),
                          data=to_record(orjson.loads(fields["data"])))
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "retry" and value.isdigit():
            self.retry = int(value) / 1000
        elif name in ("event", "id"):
            self._fields[name] = value
        elif name == "data":
            self._fields["data"] = self._fields["data"] + "\n" + value if "data" in self._fields else value
        return None
