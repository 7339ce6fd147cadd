"""The client API, written once: each method describes a request as a :class:`Call`.

:class:`cxdb.Client` runs calls synchronously and :class:`cxdb.AsyncClient`
awaits them, so both expose exactly the same methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from ._common import Record, bundle_body, query, quote_id, to_record, turn_body

__all__ = ["Call", "Methods", "Response"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Response:
    """What came back for a call: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def _json(response: Response) -> Any:
    return to_record(orjson.loads(response.body)) if response.body else Record()


def _only_turn(response: Response) -> Any:
    return _json(response)["turns"][0]


def _raw(response: Response) -> bytes:
    return response.body


def _published(response: Response) -> Record:
    return Record(status=response.status, created=response.status == 201, etag=response.headers.get("etag"))


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    body: bytes | None = None
    parse: Callable[[Response], Any] = _json
    headers: tuple[tuple[str, str], ...] = ()


def _post(path: str, body: dict[str, Any]) -> Call:
    return Call("POST", path, orjson.dumps(body))


class Methods(Generic[R]):
    """Every route of the API. Subclasses define :meth:`_run`."""

    def _run(self, call: Call) -> R:
        raise NotImplementedError

    # -- contexts -------------------------------------------------------

    def list_contexts(self, limit: int | None = None, tag: str | None = None,
                      include_provenance: bool | None = None, include_lineage: bool | None = None,
                      tag_prefix: str | None = None, before: str | None = None) -> R:
        """``GET /v1/contexts``: contexts, newest activity first, ``total``, and ``next_before`` to pass
        as ``before`` for the next page."""
        return self._run(Call("GET", "/v1/contexts" + query(limit=limit, tag=tag, tag_prefix=tag_prefix, before=before,
                                                             include_provenance=include_provenance,
                                                             include_lineage=include_lineage)))

    def get_context(self, context_id: int | str, include_provenance: bool | None = None,
                    include_lineage: bool | None = None) -> R:
        """``GET /v1/contexts/{id}``."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}" + query(
            include_provenance=include_provenance, include_lineage=include_lineage)))

    def children(self, context_id: int | str, recursive: bool | None = None, limit: int | None = None,
                 include_provenance: bool | None = None, include_lineage: bool | None = None) -> R:
        """``GET /v1/contexts/{id}/children``."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}/children" + query(
            recursive=recursive, limit=limit, include_provenance=include_provenance,
            include_lineage=include_lineage)))

    def create_context(self, base_turn_id: int | str = 0, client_tag: str | None = None,
                       provenance: dict[str, Any] | None = None) -> R:
        """``POST /v1/contexts/create``: a new context, empty or starting at ``base_turn_id``."""
        return self._run(_post("/v1/contexts/create", turn_body(None, base_turn_id=str(base_turn_id),
                                                                 client_tag=client_tag, provenance=provenance)))

    def delete_context(self, context_id: int | str, recursive: bool | None = None) -> R:
        """``DELETE /v1/contexts/{id}``: gone at once (with ``recursive``, every descendant too); its data
        is reclaimed in the background."""
        return self._run(Call("DELETE", f"/v1/contexts/{quote_id(context_id)}" + query(recursive=recursive)))

    def fork_context(self, base_turn_id: int | str, client_tag: str | None = None,
                     provenance: dict[str, Any] | None = None) -> R:
        """``POST /v1/contexts/fork``: a new context whose head is ``base_turn_id``."""
        return self._run(_post("/v1/contexts/fork", turn_body(None, base_turn_id=str(base_turn_id),
                                                               client_tag=client_tag, provenance=provenance)))

    # -- turns ----------------------------------------------------------

    def get_turns(self, context_id: int | str, limit: int | None = None, before_turn_id: int | str | None = None,
                  view: str | None = None, type_hint_mode: str | None = None, as_type_id: str | None = None,
                  as_type_version: int | None = None, include_unknown: bool | None = None,
                  bytes_render: str | None = None, u64_format: str | None = None, enum_render: str | None = None,
                  time_render: str | None = None, string_limit: int | None = None,
                  turn_id: int | str | None = None) -> R:
        """``GET /v1/contexts/{id}/turns``: a page of turns, oldest first, with every render option;
        ``string_limit`` cuts long strings (the turn lists them in ``truncated``); ``turn_id`` asks
        for exactly that turn, whole."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}/turns" + query(
            limit=limit, before_turn_id=before_turn_id, view=view, type_hint_mode=type_hint_mode,
            as_type_id=as_type_id, as_type_version=as_type_version, include_unknown=include_unknown,
            bytes_render=bytes_render, u64_format=u64_format, enum_render=enum_render, time_render=time_render,
            string_limit=string_limit, turn_id=turn_id)))

    def get_turn(self, context_id: int | str, turn_id: int | str, **options: Any) -> R:
        """Exactly one turn of a context, whole, rendered with ``options`` as :meth:`get_turns` renders."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}/turns" + query(turn_id=turn_id, **options),
                              parse=_only_turn))

    def heads(self, context_id: int | str, limit: int | None = None, before: int | str | None = None) -> R:
        """``GET /v1/contexts/{id}/heads``: the heads appends moved the context away from, newest first."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}/heads" + query(limit=limit, before=before)))

    def provenance(self, context_id: int | str) -> R:
        """``GET /v1/contexts/{id}/provenance``."""
        return self._run(Call("GET", f"/v1/contexts/{quote_id(context_id)}/provenance"))

    def append_turn(self, context_id: int | str, turn: dict[str, Any] | None = None, *, type_id: str | None = None,
                    type_version: int | None = None, data: dict[str, Any] | None = None,
                    parent_turn_id: int | str | None = None, idempotency_key: str | None = None,
                    expected_head_turn_id: int | str | None = None) -> R:
        """``POST /v1/contexts/{id}/append``, from a whole request dict, keyword fields, or both. With
        ``expected_head_turn_id``, only if the head is still that turn (else ``Conflict`` whose
        ``details["reason"]`` is ``"head_moved"``)."""
        body = turn_body(turn, type_id=type_id, type_version=type_version, data=data,
                         parent_turn_id=None if parent_turn_id is None else str(parent_turn_id),
                         idempotency_key=idempotency_key,
                         expected_head_turn_id=None if expected_head_turn_id is None else str(expected_head_turn_id))
        return self._run(_post(f"/v1/contexts/{quote_id(context_id)}/append", body))

    def append_batch(self, context_id: int | str, turns: list[dict[str, Any]],
                     parent_turn_id: int | str | None = None, expected_head_turn_id: int | str | None = None) -> R:
        """``POST /v1/contexts/{id}/append-batch``: ``turns`` (each ``type_id``, ``type_version``, ``data``,
        and optionally ``idempotency_key``) appended as a chain, all or none."""
        body: dict[str, Any] = {"turns": turns}
        if parent_turn_id is not None:
            body["parent_turn_id"] = str(parent_turn_id)
        if expected_head_turn_id is not None:
            body["expected_head_turn_id"] = str(expected_head_turn_id)
        return self._run(_post(f"/v1/contexts/{quote_id(context_id)}/append-batch", body))

    # -- registry -------------------------------------------------------

    def publish_bundle(self, bundle: dict[str, Any] | str | os.PathLike[str]) -> R:
        """``PUT /v1/registry/bundles/{id}`` from a dict or a JSON file; ``created`` is False for a repeat."""
        bundle_id, body = bundle_body(bundle)
        return self._run(Call("PUT", f"/v1/registry/bundles/{quote_id(bundle_id)}", body, _published))

    def get_bundle(self, bundle_id: str) -> R:
        """``GET /v1/registry/bundles/{id}``."""
        return self._run(Call("GET", f"/v1/registry/bundles/{quote_id(bundle_id)}"))

    def list_bundles(self) -> R:
        """``GET /v1/registry/bundles``."""
        return self._run(Call("GET", "/v1/registry/bundles"))

    def get_type_version(self, type_id: str, type_version: int) -> R:
        """``GET /v1/registry/types/{type_id}/versions/{v}``."""
        return self._run(Call("GET", f"/v1/registry/types/{quote_id(type_id)}/versions/{int(type_version)}"))

    def list_types(self) -> R:
        """``GET /v1/registry/types``: each type's latest version."""
        return self._run(Call("GET", "/v1/registry/types"))

    # -- blobs, health, stats -------------------------------------------

    def get_blob(self, content_hash: str) -> R:
        """``GET /v1/blobs/{hash}``: the raw msgpack bytes."""
        return self._run(Call("GET", f"/v1/blobs/{quote_id(content_hash)}", parse=_raw))

    def health(self) -> R:
        """``GET /health``."""
        return self._run(Call("GET", "/health"))

    def stats(self) -> R:
        """``GET /v1/stats``."""
        return self._run(Call("GET", "/v1/stats"))

    # -- tokens (cxdb:admin) ----------------------------------------------

    def create_token(self, scope: str, namespace: str | None = None, expires_in: int | str | None = None,
                     name: str | None = None) -> R:
        """``POST /v1/tokens``: a new token; its ``token`` is shown this once."""
        return self._run(_post("/v1/tokens", turn_body(None, scope=scope, namespace=namespace,
                                                        expires_in=expires_in, name=name)))

    def list_tokens(self) -> R:
        """``GET /v1/tokens``: every token's record (never the tokens themselves)."""
        return self._run(Call("GET", "/v1/tokens"))

    def revoke_token(self, token_id: str) -> R:
        """``DELETE /v1/tokens/{id}``: every server refuses the token within a second."""
        return self._run(Call("DELETE", f"/v1/tokens/{quote_id(token_id)}"))
