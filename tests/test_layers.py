"""Layers point one way: a scan of every module's imports, and the public surface."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cxdb
from tests.conftest import REPO

PACKAGE = REPO / "cxdb"
BYTE_LIBS = {"lmdb", "msgpack", "zstandard", "blake3"}
UPPER = {"cxdb.http", "cxdb.service", "cxdb.portable", "cxdb.cli", "cxdb.client"}
CORE = {"cxdb.storage", "cxdb.registry", "cxdb.projection"}
BASE = {"cxdb.codec", "cxdb.model", "cxdb.descriptor", "cxdb.errors", "cxdb.config", "cxdb.cache"}
PURE = {"cxdb.codec", "cxdb.model", "cxdb.descriptor", "cxdb.projection", "cxdb.registry", "cxdb.cache"}
IMPURE = {"time", "os", "socket", "random", "lmdb", "aiohttp", "subprocess", "pathlib"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found.add(target)
                if not node.module:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def in_layer(imported: str, layer: set[str]) -> bool:
    return any(imported == prefix or imported.startswith(prefix + ".") for prefix in layer)


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_scan_sees_every_module() -> None:
    names = {module_name(p) for p in MODULES}
    assert {"cxdb.http.app", "cxdb.storage.lmdb.writer", "cxdb.projection.render", "cxdb.client.sync"} <= names
    assert "cxdb.storage.lmdb.env" in imports(PACKAGE / "storage" / "lmdb" / "store.py")


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_point_down(path: Path) -> None:
    name = module_name(path)
    found = imports(path)
    bad: set[str] = set()
    if in_layer(name, {"cxdb.http"}):
        bad = {i for i in found if i.split(".")[0] in BYTE_LIBS or in_layer(i, CORE | {"cxdb.codec", "cxdb.cli"})}
    elif in_layer(name, CORE | BASE):
        bad = {i for i in found if i.split(".")[0] == "aiohttp" or in_layer(i, UPPER)}
        if in_layer(name, {"cxdb.registry", "cxdb.projection"}):
            bad |= {i for i in found if in_layer(i, {"cxdb.storage"})}
        if in_layer(name, {"cxdb.storage"}):
            bad |= {i for i in found if in_layer(i, {"cxdb.registry", "cxdb.projection"})}
        if in_layer(name, BASE):
            bad |= {i for i in found if in_layer(i, CORE)}
        if in_layer(name, PURE):
            bad |= {i for i in found if i.split(".")[0] in IMPURE}
    elif in_layer(name, {"cxdb.service", "cxdb.portable"}):
        bad = {i for i in found if in_layer(i, {"cxdb.http", "cxdb.cli", "cxdb.client"}) or i == "lmdb"}
    elif in_layer(name, {"cxdb.client"}):
        bad = {i for i in found if i.split(".")[0] in BYTE_LIBS or in_layer(i, CORE | UPPER - {"cxdb.client"})
               or in_layer(i, {"cxdb.codec"})}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize(("library", "package"), [("lmdb", "cxdb.storage.lmdb"), ("asyncpg", "cxdb.storage.postgres")])
def test_only_a_backend_touches_its_database_library(library: str, package: str) -> None:
    users = {module_name(p) for p in MODULES if any(i.split(".")[0] == library for i in imports(p))}
    assert users and all(in_layer(user, {package}) for user in users), sorted(users)


def test_nothing_above_storage_names_a_backend() -> None:
    """The service and the gateway talk to cxdb.storage, never to a backend's own package."""
    for path in MODULES:
        name = module_name(path)
        if in_layer(name, UPPER | {"cxdb.serve", "cxdb.metrics"}):
            named = {i for i in imports(path) if in_layer(i, {"cxdb.storage.lmdb", "cxdb.storage.postgres"})}
            assert not named, f"{name} imports {sorted(named)}"


def test_public_surface() -> None:
    assert sorted(cxdb.__all__) == sorted([
        "AsyncClient", "BadRequest", "Client", "Conflict", "CxdbError", "FailedDependency", "MethodNotAllowed",
        "Forbidden", "NotFound", "PayloadTooLarge", "PreconditionFailed", "Rebase", "Record", "TransportError", "Turn",
        "Unauthorized",
        "Unprocessable", "__version__"])
    for name in cxdb.__all__:
        assert getattr(cxdb, name) is not None


def test_every_error_derives_from_the_root() -> None:
    from cxdb import errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    for klass in classes:
        assert issubclass(klass, errors.CxdbError) and klass.code.isupper()
    assert set(errors.HTTP_STATUS) <= set(classes)
    assert errors.NotFound("x", {"id": "1"}).to_dict() == {
        "error": {"code": "NOT_FOUND", "message": "x", "details": {"id": "1"}}}


def test_modules_stay_small() -> None:
    big = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 600}
    assert not big


STATEFUL = {"LruCache", "Lock", "RLock", "OrderedDict", "Counter", "defaultdict", "Queue", "SimpleQueue",
            "ThreadPoolExecutor"}


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_level_state(path: Path) -> None:
    """Caches, locks and queues belong to an object with a lifetime (an app, a store, a service), never to a
    module: two apps or two stores in one process must not share them."""
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call):
            func = value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in STATEFUL, f"{module_name(path)} line {node.lineno}: module-level {name}"
