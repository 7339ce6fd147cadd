"""The server process as a client or an operator meets it: deadlines on every connection, protocol
errors as the envelope, shutdown, worker supervision, running out of descriptors (issue 11)."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cxdb import Client
from tests.conftest import LiveServer, wait_until

SHORT = ("--header-timeout", "1", "--body-timeout", "1", "--idle-timeout", "1")


def connect(server: LiveServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float) -> None:
    """Wait, at most ``seconds``, for the server to close ``sock`` (reading and dropping whatever it sent)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s") from None
    except ConnectionResetError:
        pass


@pytest.fixture
def short_server(tmp_path: Path) -> LiveServer:
    server = LiveServer(tmp_path / "data", *SHORT)
    yield server  # type: ignore[misc]
    server.stop()


def test_silent_partial_and_idle_connections_are_closed(short_server: LiveServer) -> None:
    silent = connect(short_server)
    partial_head = connect(short_server)
    partial_head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    partial_body = connect(short_server)
    partial_body.sendall(b"POST /v1/contexts/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    idle = connect(short_server)
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    for sock in (silent, partial_head, partial_body, idle):
        closed_within(sock, 6)  # 1 s deadlines, checked once a second; they stayed open 100 s and more
        sock.close()
    with Client(short_server.url) as client:
        assert client.health()["status"] == "ok"


def test_a_slow_upload_that_keeps_sending_survives(short_server: LiveServer) -> None:
    body = json.dumps({"client_tag": "slow" + " " * 20}).encode()
    sock = connect(short_server)
    sock.sendall(b"POST /v1/contexts/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    for byte in body:  # 2.5 s in all, well past the 1 s body deadline, but never 1 s without progress
        sock.sendall(bytes([byte]))
        time.sleep(2.5 / len(body))
    reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201"), reply
    sock.close()


@pytest.mark.parametrize("raw", [
    b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
])
def test_protocol_errors_answer_the_json_envelope(live_server: LiveServer, raw: bytes) -> None:
    sock = connect(live_server)
    sock.sendall(raw)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b" ")[1].startswith(b"4"), head
    assert b"application/json" in head
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] in ("BAD_REQUEST", "NOT_FOUND")
    assert "Traceback" not in live_server.stderr_text


def big_store(server: LiveServer) -> None:
    with Client(server.url) as client:
        context = client.create_context()
        for n in range(8):
            client.append_turn(context.context_id, {"type_id": "t", "type_version": 1,
                                                    "data": {"n": n, "text": "x" * 2_000_000}})


def stuck_reader(server: LiveServer) -> socket.socket:
    """A client that asks for a 16 MB page and does not read it: its handler waits on the socket."""
    sock = connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /v1/contexts/1/turns?limit=8 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.5)
    return sock


def test_shutdown_closes_uploads_at_once_and_waits_at_most_the_grace(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--shutdown-grace", "1")
    big_store(server)
    upload = connect(server)
    upload.sendall(b"POST /v1/contexts/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    reader = stuck_reader(server)
    server.proc.send_signal(signal.SIGTERM)
    closed_within(upload, 5)  # still receiving: closed, not waited for
    assert server.proc.wait(timeout=15) == 0  # the stuck handler got the 1 s grace, not aiohttp's 60 s
    reader.close()
    upload.close()
    text = server.close_streams()
    assert "stopping" in text and "cxdb stopped" in text


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--shutdown-grace", "60")
    big_store(server)
    reader = stuck_reader(server)
    server.proc.send_signal(signal.SIGINT)
    time.sleep(1)
    assert server.proc.poll() is None  # waiting for the stuck request, within its grace
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=10)  # well within the 60 s grace the first signal started
    reader.close()
    assert "second signal" in server.close_streams()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(text) for text in path.read_text().split()] if path.exists() else []


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--workers", "2")
    try:
        wait_until(lambda: len(children(server.proc.pid)) == 2)
        victim = children(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(server.proc.pid)) == 2 and victim not in children(server.proc.pid))
        wait_until(lambda: "died (signal 9)" in server.stderr_text)
        for _ in range(20):  # both workers answer
            with Client(server.url) as client:
                assert client.health()["status"] == "ok"
    finally:
        assert server.stop() == 0


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--workers", "2")
    wait_until(lambda: len(children(server.proc.pid)) == 2)
    workers = children(server.proc.pid)
    server.kill()

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
        return status in ("Z", "X")

    wait_until(lambda: all(gone(pid) for pid in workers), timeout=15)
    with socket.socket() as probe:  # the port is free again: a restart would not find it in use
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((server.host, server.port))


def test_out_of_descriptors_is_logged_once_and_recovers(tmp_path: Path) -> None:
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    server = LiveServer(tmp_path / "data", preexec_fn=low_limit)
    try:
        held = []
        for _ in range(80):
            try:
                held.append(socket.create_connection((server.host, server.port), timeout=2))
            except OSError:
                break
        time.sleep(3)
        lines = [line for line in server.stderr_text.splitlines() if "accept" in line.lower()]
        assert 1 <= len(lines) <= 2, lines
        assert "Traceback" not in server.stderr_text
        for sock in held:
            sock.close()
        wait_until(lambda: _healthy(server), timeout=15)
    finally:
        server.stop()


def _healthy(server: LiveServer) -> bool:
    try:
        with Client(server.url, timeout=2) as client:
            return bool(client.health()["status"] == "ok")
    except Exception:
        return False


def test_start_up_and_shutdown_lines(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "fresh", "--max-page-bytes", "1000000")
    assert server.stop() == 0
    text = server.close_streams()
    assert f"serving {(tmp_path / 'fresh').resolve()} on 127.0.0.1:{server.port}" in text
    assert "max_page_bytes=1000000" in text and "cxdb 1." in text
    assert "held no store" in text and "cxdb stopped" in text
    again = LiveServer(tmp_path / "fresh")
    assert again.stop() == 0
    assert "held no store" not in again.close_streams()


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", *argv], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_ctrl_c_to_the_process_group_is_one_signal_for_workers(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground group: workers must not take the parent's
    forwarded copy for a second, urgent signal."""
    server = LiveServer(tmp_path / "data", "--workers", "2", preexec_fn=os.setsid)
    wait_until(lambda: len(children(server.proc.pid)) == 2)
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.proc.wait(timeout=20) == 0
    text = server.close_streams()
    assert "second signal" not in text and "cxdb stopped" in text


def test_a_client_gone_mid_body_is_not_a_server_error(live_server: LiveServer) -> None:
    for _ in range(3):
        sock = connect(live_server)
        sock.sendall(b"POST /v1/contexts/create HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"client_")
        time.sleep(0.2)
        sock.close()
    time.sleep(0.5)
    with Client(live_server.url) as client:
        assert client.health()["status"] == "ok"
    text = live_server.stderr_text
    assert "ERROR" not in text and "Traceback" not in text, text


def test_a_client_that_never_reads_its_answer_is_cut_off(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", "--send-timeout", "1")
    try:
        big_store(server)
        reader = connect(server)
        reader.sendall(b"GET /v1/contexts/1/turns?limit=8 HTTP/1.1\r\nHost: x\r\n\r\n")  # a 16 MB answer
        time.sleep(4)  # read none of it: past the 1 s deadline and the sweep after it
        reader.settimeout(10)
        received = 0
        try:
            while chunk := reader.recv(1 << 20):  # what the kernels had buffered, then the end
                received += len(chunk)
        except ConnectionResetError:
            pass
        reader.close()
        assert 0 < received < 16_000_000
        with Client(server.url) as client:
            assert client.health()["status"] == "ok"
    finally:
        assert server.stop() == 0
