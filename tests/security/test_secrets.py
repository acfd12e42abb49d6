"""Secrets at rest and in flight: keys stored hashed and compared in constant time, tokens
that LiveKit itself refuses once their 600 s are over, nothing secret in any log line, and
the request limits (body size, per-key rate limit with Retry-After)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from livekit import rtc
from tests.conftest import RunningApi, Tenant, free_port, make_settings, start_api
from tests.security.conftest import NO_WORKER_AGENT, new_owner
from thinnest.api.schemas import HttpTool
from thinnest.engine.tools import call_http_tool
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.livekit.tokens import TOKEN_TTL, mint_participant_token
from thinnest.store import keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


# --- keys at rest ------------------------------------------------------------------------------


def test_the_stored_key_row_holds_only_a_sha256_and_a_short_prefix(
    api: RunningApi, database: Database
) -> None:
    owner = new_owner(api, database)
    with owner.http:
        created = owner.http.post("/keys", json={"name": "at-rest"}).json()
    plaintext = created["key"]
    with database.engine.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": created["id"]})
            .mappings()
            .one()
        )
    assert row["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row["prefix"] == plaintext[:12]  # shown in lists: 6 random characters of 40+
    secret_part = plaintext[12:]
    for column, value in row.items():
        assert secret_part[:8] not in str(value), f"api_keys.{column} holds part of the key"


def test_keys_are_looked_up_by_digest_and_compared_in_constant_time(
    api: RunningApi, database: Database
) -> None:
    # A guess is hashed before it is looked up, so a guess that shares a prefix with the real
    # key shares nothing with its digest; the final comparison is hmac.compare_digest.
    names = set(keys.authenticate.__code__.co_names)
    assert {"hash_key", "compare_digest"} <= names
    owner = new_owner(api, database)
    owner.http.close()
    near_miss = owner.key[:-1] + ("A" if owner.key[-1] != "A" else "B")
    with database.session() as db:
        assert keys.authenticate(db, owner.key).owner_id == owner.owner_id
        with pytest.raises(Exception, match="invalid API key"):
            keys.authenticate(db, near_miss)


# --- tokens -------------------------------------------------------------------------------------


async def _joins(livekit: LiveKitDevServer, token: str) -> bool:
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(livekit.options.url.replace("http", "ws"), token), 20)
    except rtc.ConnectError:
        return False
    await room.disconnect()
    return True


async def test_livekit_enforces_the_token_lifetime_by_its_issue_time(
    livekit_server: LiveKitDevServer,
) -> None:
    """Clock-controlled: tokens minted as if issued in the past. LiveKit allows a minute of
    clock skew, so the margins are two minutes either side of ``TOKEN_TTL``."""
    opts = livekit_server.options
    room = f"session_ttl_{secrets.token_hex(3)}"

    def minted(age: float) -> str:
        return mint_participant_token(
            api_key=opts.api_key,
            api_secret=opts.api_secret,
            room=room,
            identity=f"user-{age:g}",
            now=time.time() - age,
        )

    assert await _joins(livekit_server, minted(TOKEN_TTL - 120))
    assert not await _joins(livekit_server, minted(TOKEN_TTL + 120))


async def test_a_token_admits_only_its_own_room(
    livekit_server: LiveKitDevServer, security_api: RunningApi, database: Database
) -> None:
    tenant = new_owner(security_api, database)
    with tenant.http:
        agent = tenant.create_agent()
        started = await asyncio.to_thread(
            tenant.http.post, "/voice/start", json={"agent_id": agent["id"]}
        )
    body = started.json()
    room = rtc.Room()
    await asyncio.wait_for(room.connect(body["livekit_url"], body["token"]), 20)
    try:
        assert room.name == body["session_id"]
    finally:
        await room.disconnect()


# --- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def tool_endpoint() -> Iterator[str]:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/t"
    server.shutdown()
    server.server_close()


async def test_no_secret_reaches_a_log_line(
    caplog: pytest.LogCaptureFixture,
    security_api: RunningApi,
    database: Database,
    livekit_server: LiveKitDevServer,
    tmp_path: Path,
    tool_endpoint: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level: the API runs in this process
    api = security_api
    owner = new_owner(api, database)
    seen: list[str] = [owner.key, livekit_server.options.api_secret]
    with owner.http:
        created = owner.http.post("/keys", json={"name": "logged?"}).json()
        seen.append(created["key"])
        agent = owner.create_agent()
        started = owner.http.post("/voice/start", json={"agent_id": agent["id"]}).json()
        seen.append(started["token"])
        owner.http.get("/keys")
        owner.http.post(f"/voice/sessions/{started['session_id']}/end")
        owner.http.delete(f"/keys/{created['id']}")
        with api.client(created["key"]) as revoked:
            assert revoked.get("/agents").status_code == 401  # a failed auth is logged? not the key

    # Failures log too: an API whose LiveKit is down, with a secret of its own.
    down_secret = secrets.token_urlsafe(32)
    seen.append(down_secret)
    down = start_api(
        make_settings(
            tmp_path,
            None,
            livekit_url=f"http://127.0.0.1:{free_port()}",
            livekit_api_key="APIdown",
            livekit_api_secret=down_secret,
            livekit_timeout=1.0,
        ),
        database,
    )
    try:
        with down.client(owner.key) as http:
            assert http.post("/voice/start", json={"agent_id": agent["id"]}).status_code == 503
            assert http.get("/readyz").status_code == 503
    finally:
        down.stop()

    # A tool call with a secret header, and one that fails.
    tool_secret = secrets.token_urlsafe(24)
    seen.append(tool_secret)
    settings = make_settings(
        tmp_path, None, tool_secrets={"TOKEN": SecretStr(tool_secret)}, tools_allow_private=True
    )
    spec = HttpTool.model_validate(
        {
            "name": "t",
            "description": "d",
            "url": tool_endpoint,
            "headers": {"Authorization": "Bearer ${secret:TOKEN}"},
        }
    )
    async with httpx.AsyncClient() as client:
        assert await call_http_tool(spec, {"q": 1}, settings=settings, client=client)
    assert repr(settings).count(tool_secret) == 0 and down_secret not in repr(down.settings)

    logged = caplog.text
    assert len(caplog.records) > 5, "expected the calls above to log something"
    for secret in seen:
        assert secret not in logged


# --- request limits (the declared-size and LiveKit-down cases are in tests/api) -----------------


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(
    api: RunningApi, tenant: Tenant
) -> None:
    limit = api.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
        yield b'{"name": "'
        for _ in range(limit // 1024 + 2):
            yield b"a" * 1024
        yield b'"}'

    resp = tenant.http.post(
        "/agents", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"] == {
        "code": "body_too_large",
        "message": f"request body is larger than {limit} bytes",
        "field": "body",
    }


def test_the_voice_start_rate_limit_is_per_key_with_retry_after(
    livekit_server: LiveKitDevServer, database: Database, tmp_path: Path
) -> None:
    limited = start_api(
        make_settings(
            tmp_path, livekit_server, rate_limit_per_minute=2, agent_name=NO_WORKER_AGENT
        ),
        database,
    )
    alice = new_owner(limited, database)
    try:
        agent = alice.create_agent()
        second_key = alice.http.post("/keys", json={"name": "second"}).json()["key"]
        statuses = [
            alice.http.post("/voice/start", json={"agent_id": agent["id"]}).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        refused = alice.http.post("/voice/start", json={"agent_id": agent["id"]})
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert alice.http.get("/agents").status_code == 200  # only /voice/start is limited
        with limited.client(second_key) as other:  # another key has its own budget
            assert other.post("/voice/start", json={"agent_id": agent["id"]}).status_code == 200
    finally:
        alice.http.close()
        limited.stop()
