"""The asynchronous client: the same API as :class:`cxdb.Client`, on aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from types import TracebackType
from typing import Any

import aiohttp

from ._common import (
    EventParser,
    Rebase,
    StreamPlan,
    Turn,
    base_headers,
    error_from,
    events_plan,
    follow_item,
    follow_plan,
    needs_head,
    transport_error,
)
from .methods import Call, Methods, Response
from .sync import DEFAULT_URL

__all__ = ["AsyncClient"]


class AsyncClient(Methods[Awaitable[Any]]):
    """Like :class:`cxdb.Client`, but every method is awaited. Use ``async with`` or :meth:`close`."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 30.0,
                 headers: Mapping[str, str] | None = None, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = base_headers(headers, token)
        self._session: aiohttp.ClientSession | None = None

    def _run(self, call: Call) -> Awaitable[Any]:
        return self._send(call)

    async def _send(self, call: Call) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        headers = dict(call.headers)
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(call.method, self.base_url + call.path, data=call.body,
                                             headers=headers) as reply:
                body = await reply.read()
                response = Response(reply.status, {k.lower(): v for k, v in reply.headers.items()}, body)
        except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:  # no connection: nothing was sent
            raise transport_error(self.base_url, exc, sent=False) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise transport_error(self.base_url, exc, sent=True) from exc
        if response.status >= 400:
            raise error_from(response.status, response.body)
        return call.parse(response)

    async def events(self, after: int | str | None = None,
                     context_ids: tuple[int | str, ...] | list[int | str] = (), kinds: tuple[str, ...] | list[str] = (),
                     reconnect: bool = True) -> AsyncIterator[Any]:
        """Like :meth:`cxdb.Client.events`: the store's changes, resumed after the last id on reconnect."""
        async for event in self._stream(events_plan(after, context_ids, kinds), reconnect):
            yield event

    async def follow(self, context_id: int | str, after_turn_id: int | str | None = None, tail: int | None = None,
                     reconnect: bool = True, **options: Any) -> AsyncIterator[Turn | Rebase]:
        """Like :meth:`cxdb.Client.follow`: a context's turns and rebases, resumed after the last turn."""
        head = None
        if needs_head(after_turn_id, tail):
            head = (await self.get_context(context_id, include_lineage=False))["head_turn_id"]
        async for event in self._stream(follow_plan(context_id, after_turn_id, tail, options, head), reconnect):
            item = follow_item(event)
            if item is not None:
                yield item

    async def _stream(self, plan: StreamPlan, reconnect: bool) -> AsyncIterator[Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        # A stream never ends by itself: only the time between two reads is bounded (heartbeats come often).
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout.total)
        while True:
            parser = EventParser()
            path, headers = plan.request()
            try:
                async with self._session.get(self.base_url + path, headers=headers, timeout=timeout) as reply:
                    if reply.status >= 400:
                        body = await reply.read()
                        if not (reconnect and reply.status == 503):
                            raise error_from(reply.status, body)
                    else:
                        async for line in reply.content:
                            event = parser.feed(line.decode())
                            if event is not None:
                                plan.seen(event)
                                yield event
                        if not reconnect:
                            return
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if not reconnect:
                    raise transport_error(self.base_url, exc, sent=True) from exc
            await asyncio.sleep(parser.retry)

    async def iter_turns(self, context_id: int | str, page_size: int = 64, **options: Any) -> AsyncIterator[Any]:
        """Every turn from the head to the root, newest first, one page at a time."""
        before = None
        while True:
            page = await self.get_turns(context_id, limit=page_size, before_turn_id=before, **options)
            for turn in reversed(page["turns"]):
                yield turn
            before = page["next_before_turn_id"]
            if before is None:
                return

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
