"""--auth tokens: every route against the route table, the scope matrix, tokens over HTTP and the CLI,
expiry, revocation across workers, the bootstrap token, the default by bind address, audit lines."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from cxdb import AsyncClient, Client, Forbidden, NotFound, Unauthorized
from cxdb.config import settings_from
from cxdb.http.access import OPEN, ROUTES, rule_for
from cxdb.http.keys import SERVICE
from cxdb.service.tokens import ADMIN, READ, SCOPES, WRITE
from tests.conftest import LiveServer, at_once, wait_until

BOOT = "boot-" + "b" * 40
ADMIN_HEADERS = {"Authorization": f"Bearer {BOOT}"}
SAMPLES = {"context_id": "1", "bundle_id": "b", "content_hash": "0" * 64, "type_id": "t", "type_version": "1",
           "asset": "swagger-ui.css", "token_id": "0123456789abcdef"}


def _fill(canonical: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: SAMPLES[match[1]], canonical)


def _routes(app: Any) -> list[tuple[str, str]]:
    return sorted({(route.method, route.resource.canonical) for route in app.router.routes()
                   if route.resource is not None})


async def test_every_route_is_in_the_table_and_needs_a_token(make_client: Any) -> None:
    client = await make_client(auth="tokens")
    routes = _routes(client.app)
    assert len(routes) > 30
    for method, canonical in routes:
        if method != "HEAD":
            assert (method, canonical) in ROUTES, f"{method} {canonical}: add it to cxdb.http.access.ROUTES"
        response = await client.request(method, _fill(canonical))
        preflight = await client.options(_fill(canonical), headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status == 204 and method in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "authorization"
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        assert "Access-Control-Allow-Credentials" not in response.headers
        if rule_for(method, canonical) is OPEN:
            assert response.status != 401, (method, canonical)
            continue
        assert response.status == 401, (method, canonical, response.status)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            assert (await response.json())["error"]["code"] == "UNAUTHORIZED"
    # Unknown paths give nothing away either.
    assert (await client.get("/v1/nothing-here")).status == 401
    # A browser client may read why it was refused.
    refused = await client.get("/v1/contexts", headers={"Origin": "https://app.example"})
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


async def test_the_table_names_only_routes_that_exist(make_client: Any) -> None:
    client = await make_client(auth="tokens")
    assert set(ROUTES) <= set(_routes(client.app))


async def _tokens(client: Any, **extra: str) -> dict[str, str]:
    """One token per scope, made over HTTP by the bootstrap admin."""
    made = {}
    for scope in SCOPES:
        response = await client.post("/v1/tokens", json={"scope": scope, "name": scope, **extra},
                                     headers=ADMIN_HEADERS)
        assert response.status == 201, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        made[scope] = (await response.json())["token"]
    return made


async def test_the_scope_matrix(make_client: Any) -> None:
    client = await make_client(auth="tokens", bootstrap_token=BOOT)
    tokens = await _tokens(client)
    for method, canonical in _routes(client.app):
        rule = rule_for(method, canonical)
        if rule.scope is None or method == "HEAD":
            continue
        path = _fill(canonical)
        statuses = {}
        for scope in SCOPES:
            response = await client.request(method, path, headers={"Authorization": f"Bearer {tokens[scope]}"})
            statuses[scope] = response.status
            if response.content_type == "text/event-stream":
                response.close()
                continue
            if SCOPES.index(scope) < SCOPES.index(rule.scope):
                assert response.status == 403, (method, canonical, scope)
                body = await response.json()
                assert body["error"]["code"] == "FORBIDDEN"
                assert body["error"]["details"]["required_scope"] == rule.scope
            else:
                assert response.status not in (401, 403), (method, canonical, scope, response.status)
        # Whoever may call a route gets what an admin gets (the request is the same).
        allowed = [statuses[scope] for scope in SCOPES if SCOPES.index(scope) >= SCOPES.index(rule.scope)]
        assert len({status // 100 for status in allowed}) == 1, (method, canonical, statuses)


async def test_bad_tokens_are_401_and_tell_why(make_client: Any) -> None:
    client = await make_client(auth="tokens", bootstrap_token=BOOT)
    tokens = await _tokens(client)
    good = tokens[READ]
    token_id = good.split("_")[1]
    wrong_secret = f"cxdb_{token_id}_{'A' * 43}"
    for header in ("Bearer", "Bearer ", f"Basic {good}", f"Bearer {wrong_secret}", f"Bearer {good}x",
                   f"Bearer {good[:-1]}", "Bearer " + "x" * 5000):
        response = await client.get("/v1/contexts", headers={"Authorization": header})
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="cxdb", error="invalid_token"'
        assert (await response.json())["error"]["details"]["reason"] == "invalid_token"
    missing = await client.get("/v1/contexts")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="cxdb"'
    assert (await client.get("/v1/contexts", headers={"Authorization": f"bearer {good}"})).status == 200


async def test_tokens_over_http_list_revoke_and_expire(make_client: Any) -> None:
    client = await make_client(auth="tokens", bootstrap_token=BOOT)
    created = await client.post("/v1/tokens", json={"scope": WRITE, "namespace": "ns/", "expires_in": "1h",
                                                    "name": "agent"}, headers=ADMIN_HEADERS)
    body = await created.json()
    assert body["token"].startswith(f"cxdb_{body['token_id']}_") and len(body["token"]) == 5 + 16 + 1 + 43
    assert body["scope"] == WRITE and body["namespace"] == "ns/" and body["state"] == "active"
    assert body["expires_at"] > body["created_at"]
    listed = await (await client.get("/v1/tokens", headers=ADMIN_HEADERS)).json()
    assert [t["token_id"] for t in listed["tokens"]] == ["bootstrap", body["token_id"]]
    assert all("token" not in t and "digest" not in t for t in listed["tokens"])
    assert BOOT not in str(listed) and body["token"] not in str(listed)
    mine = {"Authorization": f"Bearer {body['token']}"}
    assert (await client.get("/v1/contexts", headers=mine)).status == 200
    assert (await client.delete(f"/v1/tokens/{body['token_id']}", headers=ADMIN_HEADERS)).status == 204
    assert (await client.delete(f"/v1/tokens/{body['token_id']}", headers=ADMIN_HEADERS)).status == 204
    assert (await client.delete("/v1/tokens/nosuchtoken", headers=ADMIN_HEADERS)).status == 404
    await asyncio.sleep(0.6)  # past REVALIDATE_SECONDS: the cached check is asked again
    assert (await client.get("/v1/contexts", headers=mine)).status == 401
    states = {t["token_id"]: t["state"] for t in (await (await client.get(
        "/v1/tokens", headers=ADMIN_HEADERS)).json())["tokens"]}
    assert states[body["token_id"]] == "revoked"
    for bad in ({"scope": "cxdb:root"}, {"scope": ADMIN, "namespace": "x/"}, {"scope": READ, "namespace": ""},
                {"scope": READ, "expires_in": 0}, {"scope": READ, "expires_in": "soon"}, {},
                {"scope": READ, "expires_in": True}):
        response = await client.post("/v1/tokens", json=bad, headers=ADMIN_HEADERS)
        assert response.status == 422, bad
        assert (await response.json())["error"]["code"] == "UNPROCESSABLE_ENTITY"


async def test_an_expired_token_is_refused(make_client: Any) -> None:
    client = await make_client(auth="tokens", bootstrap_token=BOOT)
    service = client.app[SERVICE]
    text, record = await service.tokens.create(READ, expires_in=1)
    headers = {"Authorization": f"Bearer {text}"}
    assert (await client.get("/v1/contexts", headers=headers)).status == 200
    await asyncio.sleep(1.1)
    response = await client.get("/v1/contexts", headers=headers)
    assert response.status == 401
    listed = await (await client.get("/v1/tokens", headers=ADMIN_HEADERS)).json()
    assert {t["token_id"]: t["state"] for t in listed["tokens"]}[record.token_id] == "expired"


async def test_the_store_keeps_only_a_keyed_hash(service: Any) -> None:
    text, record = await service.tokens.create(WRITE, name="x")
    stored = await service.store.auth_entry("token:" + record.token_id)
    secret = await service.store.auth_entry("secret")
    secret_part = text[len("cxdb_") + 16 + 1:]  # the secret may itself contain "_"
    assert len(secret_part) == 43
    assert text.encode() not in stored and secret_part.encode() not in stored
    assert len(secret) == 32
    import hashlib
    import hmac
    assert bytes.fromhex(__import__("orjson").loads(stored)["digest"]) == hmac.new(
        secret, text.encode(), hashlib.sha256).digest()
    # Two processes that race to make the secret agree on the first one.
    assert await service.store.put_auth_entry("secret", b"other", replace=False) == secret
    grant = await service.tokens.verify(text)
    assert grant is not None and grant.scope == WRITE and grant.token_id == record.token_id
    flipped = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert await service.tokens.verify(flipped) is None
    assert await service.tokens.verify(text[:10]) is None


async def test_verification_compares_in_constant_time(service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check of a token ends in hmac.compare_digest of the stored digest and the presented one,
    whose time does not depend on where they differ (timing it here would only measure the machine's
    noise)."""
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    text, record = await service.tokens.create(READ)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert await service.tokens.verify(wrong) is None
    assert await service.tokens.verify(text) is not None
    assert len(compared) == 2 and all(stored == record.digest for stored, _ in compared)
    assert compared[0][1] != record.digest and compared[1][1] == record.digest


async def test_rate_limits_go_by_token(make_client: Any) -> None:
    from cxdb.config import Rate

    client = await make_client(auth="tokens", bootstrap_token=BOOT, rate_limit=Rate(2, 60))
    first = await client.post("/v1/tokens", json={"scope": READ}, headers=ADMIN_HEADERS)
    second = await client.post("/v1/tokens", json={"scope": READ}, headers=ADMIN_HEADERS)
    assert first.status == 201 and second.status == 201
    assert (await client.get("/v1/contexts", headers=ADMIN_HEADERS)).status == 429  # the admin's bucket is empty
    for created in (first, second):  # each other token has a bucket of its own, from the same address
        headers = {"Authorization": f"Bearer {(await created.json())['token']}"}
        response = await client.get("/v1/contexts", headers=headers)
        assert response.status == 200 and response.headers["X-RateLimit-Remaining"] == "1"
        assert (await client.get("/v1/contexts", headers=headers)).status == 200
        limited = await client.get("/v1/contexts", headers=headers)
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    # Strangers take from their address's bucket: after the burst, no more token checks for them.
    strangers = [await client.get("/v1/contexts", headers={"Authorization": f"Bearer cxdb_{n:016x}_{'x' * 43}"})
                 for n in range(3)]
    assert [response.status for response in strangers] == [401, 401, 429]


async def test_denials_and_token_changes_are_audit_lines(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(auth="tokens", bootstrap_token=BOOT)
    tokens = await _tokens(client)
    caplog.set_level(logging.INFO)
    caplog.clear()
    await client.get("/v1/stats")
    await client.put("/v1/registry/bundles/x", data=b"{}", headers={"Authorization": f"Bearer {tokens[READ]}"})
    created = await (await client.post("/v1/tokens", json={"scope": READ}, headers=ADMIN_HEADERS)).json()
    await client.delete(f"/v1/tokens/{created['token_id']}", headers=ADMIN_HEADERS)
    audit = [record for record in caplog.records if record.name == "cxdb.audit"]
    assert [(r.event, r.status) for r in audit] == [  # type: ignore[attr-defined]
        ("denied", 401), ("denied", 403), ("token_created", 201), ("token_revoked", 204)]
    assert audit[0].token_id is None and audit[0].route == "/v1/stats"  # type: ignore[attr-defined]
    assert audit[1].token_id == tokens[READ].split("_")[1]  # type: ignore[attr-defined]
    assert audit[2].token_id == "bootstrap" and audit[2].subject == created["token_id"]  # type: ignore[attr-defined]
    assert all(r.remote == "127.0.0.1" for r in audit)  # type: ignore[attr-defined]
    everything = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for text in (*tokens.values(), created["token"], BOOT):
        assert text not in everything
    access = [r for r in caplog.records if r.name == "cxdb.access" and r.status == 201]  # type: ignore[attr-defined]
    assert access and access[0].token_id == "bootstrap"  # type: ignore[attr-defined]


def test_the_default_mode_follows_the_bind_address() -> None:
    assert settings_from(None, {}).auth == "off"
    assert settings_from(None, {"CXDB_HOST": "::1"}).auth == "off"
    assert settings_from(None, {"CXDB_HOST": "localhost"}).auth == "off"
    assert settings_from(None, {"CXDB_HOST": "0.0.0.0"}).auth == "tokens"
    assert settings_from(None, {"CXDB_HOST": "10.1.2.3"}).auth == "tokens"
    assert settings_from(None, {"CXDB_HOST": "0.0.0.0", "CXDB_AUTH": "off"}).auth == "off"
    assert settings_from(None, {"CXDB_AUTH": "tokens"}).auth == "tokens"
    with pytest.raises(ValueError, match="CXDB_AUTH"):
        settings_from(None, {"CXDB_AUTH": "maybe"})
    assert "bootstrap" not in repr(settings_from(None, {"CXDB_BOOTSTRAP_TOKEN": BOOT}))
    assert BOOT not in repr(settings_from(None, {"CXDB_BOOTSTRAP_TOKEN": BOOT}))


def test_a_server_on_every_address_needs_tokens_and_warns_when_told_not_to(store_url: str) -> None:
    server = LiveServer(store_url, "--host", "0.0.0.0", env={"CXDB_BOOTSTRAP_TOKEN": BOOT})
    try:
        url = server.url.replace("0.0.0.0", "127.0.0.1")
        with Client(url, token="") as anonymous, pytest.raises(Unauthorized):
            anonymous.list_contexts()
        with Client(url, token=BOOT) as admin:
            assert admin.list_contexts()["total"] == 0
    finally:
        server.stop()
    assert BOOT not in server.stderr_text
    server = LiveServer(store_url, "--host", "0.0.0.0", "--auth", "off")
    try:
        with Client(server.url.replace("0.0.0.0", "127.0.0.1"), token="") as anonymous:
            assert anonymous.list_contexts()["total"] == 0
        wait_until(lambda: "access control is off on 0.0.0.0" in server.stderr_text)
    finally:
        server.stop()


def _cli(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cxdb", "token", *args, "--store", store], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CXDB_LOG_LEVEL": "warning"})


def test_the_cli_makes_lists_and_revokes_tokens_while_two_workers_serve(store_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    made = _cli(store_url, "create", "--scope", ADMIN, "--name", "first admin")
    assert made.returncode == 0, made.stderr
    admin_token = made.stdout.strip()
    assert re.fullmatch(r"cxdb_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", admin_token)
    assert "shown only once" in made.stderr and admin_token not in made.stderr
    server = LiveServer(store_url, "--auth", "tokens", "--workers", "2")
    try:
        reader = _cli(store_url, "create", "--scope", READ, "--namespace", "team/", "--expires", "30d")
        assert reader.returncode == 0, reader.stderr
        read_token = reader.stdout.strip()
        read_id = read_token.split("_")[1]
        listed = _cli(store_url, "list")
        assert listed.returncode == 0 and read_id in listed.stdout and read_token not in listed.stdout

        def read(client: Client, n: int) -> int:
            return int(client.list_contexts()["total"])

        monkeypatch.setenv("CXDB_TOKEN", read_token)  # the client reads it, in every thread
        assert at_once(server.url, 16, read) == [0] * 16
        revoked = _cli(store_url, "revoke", read_id)
        assert revoked.returncode == 0 and f"revoked token {read_id}" in revoked.stdout
        time.sleep(1.0)  # the promise: every worker refuses it within a second
        outcomes = at_once(server.url, 16, read)
        assert all(isinstance(outcome, Unauthorized) for outcome in outcomes), outcomes
        monkeypatch.delenv("CXDB_TOKEN")
        with Client(server.url, token=admin_token) as admin:
            assert {t["token_id"]: t["state"] for t in admin.list_tokens()["tokens"]}[read_id] == "revoked"
            created = admin.create_token(WRITE, name="via client")
            with Client(server.url, token=created["token"]) as writer, pytest.raises(Forbidden) as refused:
                writer.list_tokens()
            assert refused.value.details["required_scope"] == ADMIN
            admin.revoke_token(created["token_id"])
            with pytest.raises(NotFound):
                admin.revoke_token("nosuchtoken")
    finally:
        server.stop()
    assert admin_token not in server.stderr_text and read_token not in server.stderr_text
    assert _cli(store_url, "revoke", "nosuchtoken").returncode == 1
    bad = _cli(store_url, "create", "--scope", ADMIN, "--namespace", "x/")
    assert bad.returncode == 1 and "namespace" in bad.stderr


def test_the_bootstrap_token_is_made_at_start_and_replaced_when_it_changes(store_url: str) -> None:
    server = LiveServer(store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": BOOT})
    try:
        with Client(server.url, token=BOOT) as admin:
            assert [t["token_id"] for t in admin.list_tokens()["tokens"]] == ["bootstrap"]

        async def use_async() -> None:
            async with AsyncClient(server.url, token=BOOT) as admin:
                made = await admin.create_token(READ, expires_in=60)
            async with AsyncClient(server.url, token=made.token) as reader:
                assert (await reader.list_contexts()).total == 0
                with pytest.raises(Forbidden):
                    await reader.create_context()

        asyncio.run(use_async())
    finally:
        server.stop()
    other = "another-bootstrap-token-" + "z" * 20
    server = LiveServer(store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": other})
    try:
        with Client(server.url, token=BOOT) as old, pytest.raises(Unauthorized):
            old.list_tokens()
        with Client(server.url, token=other) as admin:
            assert "bootstrap" in [t["token_id"] for t in admin.list_tokens()["tokens"]]
            admin.revoke_token("bootstrap")
    finally:
        server.stop()
    server = LiveServer(store_url, "--auth", "tokens", env={"CXDB_BOOTSTRAP_TOKEN": other})
    try:
        with Client(server.url, token=other) as revoked, pytest.raises(Unauthorized):
            revoked.list_contexts()  # a revoked bootstrap token stays revoked while its value is the same
    finally:
        server.stop()
    short = subprocess.run([sys.executable, "-m", "cxdb", "serve", "--store", store_url, "--port", "0"],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "CXDB_BOOTSTRAP_TOKEN": "x"})
    assert short.returncode != 0 and "CXDB_BOOTSTRAP_TOKEN" in short.stderr
