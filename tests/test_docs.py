"""Every curl and Python example in README.md and docs/ runs against a live server.

Each document gets a fresh server; its blocks run in order, sharing state the way
a reader following the page would. ``curl`` fails on any HTTP error unless its
block says ``# expect-error``. ``cxdb check``, ``cxdb backup``, ``cxdb token``, ``cxdb export``,
``cxdb import``, ``cxdb copy`` and ``cxdb gc`` blocks run beside the live server. Other bash blocks
(installs, ``cxdb serve``) are the reader's setup and are not run here. A document marked
``<!-- docs-test: auth -->`` gets a server with ``--auth tokens`` and a ``CXDB_BOOTSTRAP_TOKEN``,
which its blocks see in their environment, as the reader who started that server would.

Each document runs on both backends: the reader's ``./cxdb-data`` becomes the store under test, a
PostgreSQL URL in the second run. ``cxdb backup`` copies LMDB stores only, so its blocks run on LMDB.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxdb.config import is_database_url
from tests.conftest import REPO, LiveServer

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# The reader's python3 is the one cxdb is installed in.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
CURL_WRAPPER = 'curl() { command curl -sS --fail-with-body "$@"; }\n'


def blocks(path: Path) -> list[tuple[str, str]]:
    found = []
    for lang, body in FENCE.findall(path.read_text()):
        runs_here = "curl " in body or re.search(r"^\S*cxdb (check|backup|token|export|import|copy|gc)", body, re.M)
        if lang in ("bash", "sh", "shell") and runs_here:
            found.append(("bash", body))
        elif lang == "python":
            found.append(("python", body))
    return found


def localize(text: str, server: LiveServer, shell: bool = True) -> str:
    """The reader's store and address, made the test server's (the store quoted for the shell: a
    PostgreSQL URL may hold ``&``)."""
    text = text.replace("./cxdb-data", shlex.quote(server.store) if shell else server.store)
    return text.replace("http://localhost:9010", server.url).replace("http://127.0.0.1:9010", server.url)


def test_docs_have_examples() -> None:
    assert len(blocks(REPO / "README.md")) >= 3
    assert len(blocks(REPO / "docs" / "getting-started.md")) >= 8


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="curl and jq are needed")
@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(d)], ids=lambda d: d.name)
def test_examples_run(doc: Path, tmp_path: Path, store_url: str) -> None:
    env = dict(ENV)
    if "<!-- docs-test: auth -->" in doc.read_text():
        env["CXDB_BOOTSTRAP_TOKEN"] = secrets.token_urlsafe(32)
        server = LiveServer(store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": env["CXDB_BOOTSTRAP_TOKEN"]})
    else:
        server = LiveServer(store_url)
    try:
        for index, (lang, body) in enumerate(blocks(doc)):
            if is_database_url(store_url) and re.search(r"^cxdb backup", body, re.M):
                continue
            code = localize(body, server, shell=lang == "bash")
            if lang == "bash":
                wrapper = "" if "# expect-error" in code else CURL_WRAPPER
                script = "set -euo pipefail\n" + wrapper + code
                cwd = REPO if "curl " in code else tmp_path
                result = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                                        timeout=60, env=env)
            else:
                result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                        timeout=60, env=env)
            assert result.returncode == 0, (
                f"{doc.name} block {index} ({lang}) failed:\n{code}\n--- stdout\n{result.stdout}\n"
                f"--- stderr\n{result.stderr}")
    finally:
        assert server.stop() == 0


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="curl and jq are needed")
def test_the_blob_example_runs_alone(store_url: str) -> None:
    """A reader who jumps to the blob section has a fresh server, not the state earlier examples left."""
    body = next(code for lang, code in blocks(REPO / "docs" / "http-api.md") if "/v1/blobs/" in code)
    server = LiveServer(store_url)
    try:
        result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + CURL_WRAPPER + localize(body, server)],
                                cwd=REPO, capture_output=True, text=True, timeout=60, env=ENV)
        assert result.returncode == 0, result.stderr
        assert "'hi'" in result.stdout and "1706615000000" in result.stdout
    finally:
        assert server.stop() == 0
