"""Durability: an acknowledged append survives SIGKILL of the process at any moment."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cxdb.storage import Store

CHILD = Path(__file__).with_name("crash_child.py")


def _run_and_kill(path: Path, delay: float) -> list[tuple[int, str, int]]:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout))  # type: ignore[arg-type]
    reader.start()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()
    proc.stdout.close()
    acked = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:  # a line cut by the kill was never a complete acknowledgement
            acked.append((int(parts[0]), parts[1], int(parts[2])))
    return acked


def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = random.Random(20261123)
    acknowledged: list[tuple[int, str, int]] = []
    for _ in range(12):
        acked = _run_and_kill(path, rng.uniform(0.05, 0.6))
        acknowledged.extend(acked)
        with Store(path) as store:
            for turn_id, digest, context_id in acknowledged:
                turn = store.get_turn(turn_id)
                assert turn.content_hash.hex() == digest
                assert turn.context_id == context_id
            report = store.check()
            assert report["ok"], report
            ids = [t for t, _, _ in acknowledged]
            assert len(ids) == len(set(ids))
    assert len(acknowledged) > 100
