"""The bare aiohttp baseline: the least any aiohttp server can do for the same requests.

POST reads the body, parses it as JSON and answers a small JSON object. GET answers the
fixed bytes of a page file (the same bytes cxdb answers for its page), so a ratio
against it measures what cxdb adds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from aiohttp import web


def main() -> None:
    port = int(sys.argv[1])
    page = Path(sys.argv[2]).read_bytes() if len(sys.argv) > 2 else b"{}"
    counter = 0

    async def post(request: web.Request) -> web.Response:
        nonlocal counter
        body = orjson.loads(await request.read())
        counter += 1
        reply = {"context_id": "1", "turn_id": str(counter), "depth": counter, "type": body.get("type_id")}
        return web.Response(body=orjson.dumps(reply), content_type="application/json", status=201)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/contexts/{context_id}/append", post)
    app.router.add_get("/v1/contexts/{context_id}/turns", get)
    try:  # the same event loop cxdb serve picks, so that ratios compare like with like
        import uvloop
    except ImportError:
        uvloop = None
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop() if uvloop is not None else None)


if __name__ == "__main__":
    main()
