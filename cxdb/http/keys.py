"""Typed application keys and the response helper every handler uses."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..config import Settings
from ..service import Service

__all__ = ["REQUEST_ID", "SERVICE", "SETTINGS", "json_response"]

SERVICE = web.AppKey("service", Service)
SETTINGS = web.AppKey("settings", Settings)
REQUEST_ID = web.RequestKey("request_id", str)
"""The id of a request: the client's sane ``X-Request-Id``, or a new one."""


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json",
                        headers=headers)
