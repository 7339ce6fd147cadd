"""A private PostgreSQL cluster: for the benchmarks, and for the tests that stop and start the database
under a server.

It runs from a temporary directory on a Unix socket of its own, as the ``postgres`` user when run as
root (PostgreSQL refuses root), with the server's default settings (fsync and synchronous commit on),
and is removed by :meth:`Cluster.remove`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Cluster", "NoPostgres"]


class NoPostgres(RuntimeError):
    """PostgreSQL's server programs are not installed."""


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    return Path(found[-1]) if found else None


class Cluster:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise NoPostgres("PostgreSQL's server programs are not installed (apt-get install -y postgresql)")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="cxdb-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.url = f"postgresql://postgres@/postgres?host={self.dir}"
        self.start()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bindir / program), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-c listen_addresses='' -k {self.dir} -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.dir, ignore_errors=True)
