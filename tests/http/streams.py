"""Readers of the live streams for tests: Server-Sent Events over a raw HTTP connection, and WebSockets."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


class Stream:
    """A raw SSE reader over one HTTP connection."""

    def __init__(self, url: str, query: str = "", headers: dict[str, str] | None = None, timeout: float = 15,
                 path: str = "/v1/events") -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.conn.request("GET", path + query, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def frame(self) -> dict[str, Any]:
        """The next block: its fields, ``data`` parsed, ``comments`` listed."""
        block: dict[str, Any] = {"comments": []}
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if not line:
                if len(block) > 1 or block["comments"]:
                    return block
                continue
            if line.startswith(":"):
                block["comments"].append(line[1:].strip())
                continue
            name, _, value = line.partition(": ")
            block[name] = json.loads(value) if name == "data" else value

    def event(self) -> dict[str, Any]:
        """The next event, skipping the retry hint and heartbeats."""
        while True:
            block = self.frame()
            if "event" in block:
                return block

    def close(self) -> None:
        self.conn.close()
