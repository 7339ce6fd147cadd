"""What the sync and async clients share: records, query building, error mapping."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..errors import CxdbError, TransportError, Unprocessable, error_class

__all__ = ["EventParser", "Record", "bundle_body", "error_from", "events_request", "query", "quote_id", "to_record",
           "transport_error", "turn_body"]

class Record(dict[str, Any]):
    """A JSON object that also allows attribute access: ``ctx.context_id``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


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


def events_request(last: int | str | None, context_ids: tuple[int | str, ...] | list[int | str],
                   kinds: tuple[str, ...] | list[str]) -> tuple[str, dict[str, str]]:
    """The path and headers of a ``GET /v1/events`` that resumes after ``last``."""
    pairs = [("context_id", str(context_id)) for context_id in context_ids]
    if kinds:
        pairs.append(("events", ",".join(kinds)))
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    return "/v1/events" + ("?" + urlencode(pairs) if pairs else ""), headers


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
