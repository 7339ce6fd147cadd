"""Validate every JSON response an app sends against the OpenAPI schema for its route, method and status.

The test fixtures attach :func:`watch` to each app they build, and fail the test at teardown if any
response did not conform: a field added, renamed or retyped without the spec fails a test.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator

from cxdb.http.openapi import build_spec

__all__ = ["FAILURES", "watch"]

FAILURES: web.AppKey[list[str]] = web.AppKey("conformance_failures", list)


@cache
def _spec() -> dict[str, Any]:
    return build_spec()


@cache
def _validator(path: str, method: str, status: str) -> Draft202012Validator | None:
    """The validator of one documented JSON response, or None when the response is not documented."""
    spec = _spec()
    operation = spec["paths"].get(path, {}).get(method)
    if operation is None:
        return None
    response = operation["responses"].get(status)
    if response is None:
        return None
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return Draft202012Validator({**schema, "components": spec["components"]})


def check(path: str | None, method: str, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with one response, or None."""
    if content_type != "application/json" or method == "HEAD" or not body:
        return None
    value = orjson.loads(body)
    if path is None:  # no route matched: the 404 or 405 envelope
        errors = list(Draft202012Validator({**_spec()["components"]["schemas"]["Error"],
                                            "components": _spec()["components"]}).iter_errors(value))
        return f"{method} (no route) {status}: {errors[0].message}" if errors else None
    validator = _validator(path, method.lower(), str(status))
    if validator is None:
        return f"{method} {path} answered {status}, which the spec does not document"
    errors = list(validator.iter_errors(value))
    if errors:
        return f"{method} {path} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"
    return None


def watch(app: web.Application) -> web.Application:
    """Check every response ``app`` prepares; failures collect in ``app[FAILURES]``."""
    app[FAILURES] = []

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        problem = check(path, request.method, response.status, response.content_type, response.body)
        if problem is not None:
            request.app[FAILURES].append(problem)

    app.on_response_prepare.append(on_prepare)
    return app
