"""PostgreSQL stopped and started again under a live server with light load: 503 with the envelope and
Retry-After during the outage (no hang, no 500), service again after it without a restart, and every
acknowledged append still there."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from bench.pgcluster import Cluster, NoPostgres
from cxdb import Client
from tests.conftest import LiveServer, wait_until


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    try:
        made = Cluster()
    except NoPostgres as exc:
        pytest.skip(str(exc))
    try:
        yield made
    finally:
        made.remove()


class Writer(threading.Thread):
    """Appends one turn after another, each with its own idempotency key, and notes every answer."""

    def __init__(self, url: str, context_id: str) -> None:
        super().__init__(daemon=True)
        self.url = urlsplit(url)
        self.context_id = context_id
        self.answers: list[tuple[int, int, dict[str, Any], str | None]] = []
        self.stopping = threading.Event()

    def statuses(self) -> list[int]:
        return [status for _, status, _, _ in self.answers]

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            # A socket timeout fails the test: a request must never hang while the database is away.
            conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)
            body = {"type_id": "t", "type_version": 1, "data": {"n": n}, "idempotency_key": f"k{n}"}
            conn.request("POST", f"/v1/contexts/{self.context_id}/append", body=json.dumps(body),
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            self.answers.append((n, response.status, json.loads(response.read()), response.getheader("Retry-After")))
            conn.close()
            time.sleep(0.01)


def test_a_database_restart_gives_503s_then_service_and_loses_nothing(cluster: Cluster) -> None:
    server = LiveServer(cluster.url)
    writer = None
    try:
        with Client(server.url) as client:
            context_id = client.create_context().context_id
        writer = Writer(server.url, context_id)
        writer.start()
        wait_until(lambda: writer.statuses().count(201) >= 20, timeout=60)
        cluster.stop()
        wait_until(lambda: writer.statuses().count(503) >= 3, timeout=60)
        cluster.start()
        seen = len(writer.answers)
        wait_until(lambda: 201 in writer.statuses()[seen:], timeout=60)
        writer.stopping.set()
        writer.join(timeout=60)
        assert set(writer.statuses()) <= {201, 503}, server.stderr_text[-6000:]
        for _, status, body, retry_after in writer.answers:
            if status == 503:
                assert body["error"]["code"] in ("STORE_UNAVAILABLE",), body
                assert retry_after is not None and retry_after.isdigit()
        acknowledged = {body["turn_id"] for _, status, body, _ in writer.answers if status == 201}
        with Client(server.url) as client:
            stored = {turn["turn_id"] for turn in client.iter_turns(context_id, view="raw")}
            assert acknowledged <= stored
            # A request that got 503 may or may not have been stored; its retry makes exactly one turn.
            for n, status, _, _ in writer.answers:
                if status == 503:
                    again = client.append_turn(context_id, type_id="t", type_version=1, data={"n": n},
                                               idempotency_key=f"k{n}")
                    stored.add(again.turn_id)
            assert len(list(client.iter_turns(context_id, view="raw"))) == len(stored)
            assert client.health()["status"] == "ok"
    finally:
        if writer is not None:
            writer.stopping.set()
        assert server.stop() == 0
    assert "Traceback" not in server.stderr_text


def test_serve_and_check_refuse_a_database_that_cannot_be_reached(cluster: Cluster) -> None:
    import subprocess
    import sys

    cluster.stop()
    for command in (["serve", "--port", "0"], ["check"], ["migrate"]):
        result = subprocess.run([sys.executable, "-m", "cxdb", *command, "--store", cluster.url],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "database" in lines[0] and "unavailable" in lines[0], lines[0]
