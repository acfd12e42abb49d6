"""Secrets at rest and in flight: keys stored hashed and compared in constant time, tokens
that LiveKit itself refuses once their 600 s are over, nothing secret in any log line, and
the request limits (body size, per-key rate limit with Retry-After)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed

from livekit import api as lkapi
from livekit import rtc
from tests.conftest import RunningApi, Tenant, free_port, make_settings, start_api
from tests.security.conftest import NO_WORKER_AGENT, new_owner
from thinnest.contracts.agent import HttpTool
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
    # LiveKit creates no room on join (auto_create off): the room exists first, as the API's.
    async with lkapi.LiveKitAPI(opts.url, opts.api_key, opts.api_secret) as client:
        await client.room.create_room(lkapi.CreateRoomRequest(name=room, empty_timeout=60))

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


async def _talk_over_the_gateway(api_url: str, session_id: str, token: str) -> None:
    """Open the session's ``websocket_url`` with ``?token=`` (as the README shows), get
    ``ready``, hang up; then a handshake the gateway refuses (a token of another session)."""
    from websockets.asyncio.client import connect

    ws_base = api_url.replace("http", "ws", 1)
    async with connect(
        f"{ws_base}/ws/{session_id}?token={token}&sample_rate=16000", open_timeout=30
    ) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(ws.recv(), 60)).get("type") != "ready":
            pass
        await ws.send(json.dumps({"type": "end"}))
    async with connect(f"{ws_base}/ws/session_other?token={token}", open_timeout=30) as ws:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)


def _assert_nothing_secret(logged: str, *secrets_: str) -> None:
    for secret in secrets_:
        assert secret not in logged
        if secret.count(".") == 2:  # a JWT: not its signature alone either
            assert secret.rsplit(".", 1)[1] not in logged


async def test_a_token_in_a_websocket_url_is_not_logged_in_process(
    caplog: pytest.LogCaptureFixture, security_api: RunningApi, database: Database
) -> None:
    """uvicorn logs each handshake with its query string at INFO, through its own
    non-propagating ``uvicorn`` logger: capture that logger too, at every level."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    owner = new_owner(security_api, database)
    try:
        with owner.http:
            agent = owner.create_agent()
            started = owner.http.post("/voice/start", json={"agent_id": agent["id"]}).json()
        await _talk_over_the_gateway(security_api.url, started["session_id"], started["token"])
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    handshakes = [r.getMessage() for r in caplog.records if "WebSocket /ws/" in r.getMessage()]
    assert handshakes, "expected uvicorn to log the handshakes"
    assert all("token=[redacted]" in line for line in handshakes), handshakes
    _assert_nothing_secret(caplog.text, started["token"], owner.key)


# ``thinnest serve`` at DEBUG starts the app and imports the providers for the agent check.
@pytest.mark.timeout(400)
def test_thinnest_serve_logs_no_token_nor_key(
    livekit_server: LiveKitDevServer, database: Database, database_url: str, tmp_path: Path
) -> None:
    """The API as deployed, ``thinnest serve`` with its own logging, at DEBUG: a session
    started, its WebSocket opened with ``?token=`` and refused with it; then its log is read."""
    port = free_port()
    opts = livekit_server.options
    env = {
        **os.environ,
        "THINNEST_DATA_DIR": str(tmp_path),
        "THINNEST_DATABASE_URL": database_url,
        "THINNEST_API_PORT": str(port),
        "THINNEST_LIVEKIT_URL": opts.url,
        "THINNEST_LIVEKIT_API_KEY": opts.api_key,
        "THINNEST_LIVEKIT_API_SECRET": opts.api_secret,
        "THINNEST_AGENT_NAME": NO_WORKER_AGENT,
        "THINNEST_REQUIRE_WORKER": "false",
        "THINNEST_LOG_LEVEL": "DEBUG",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "thinnest", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "thinnest serve did not answer /healthz"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        with database.session() as db:
            owner = keys.get_or_create_owner(db, f"owner-{secrets.token_hex(4)}")
            _row, key = keys.create_key(db, owner)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=180
        ) as http:
            agent = http.post("/agents", json={"name": "logged"}).json()
            started = http.post("/voice/start", json={"agent_id": agent["id"]}).json()
            # A token in a plain request's query string too (the access log is off; were it
            # on, it must not print one either).
            http.get(f"/healthz?token={started['token']}")
        asyncio.run(_talk_over_the_gateway(base, started["session_id"], started["token"]))
        time.sleep(1)  # the gateway logs the close after the socket has closed
    finally:
        proc.terminate()
        proc.wait(60)
    logged = log_path.read_text()
    assert "WebSocket /ws/" in logged, logged[-3000:]  # the handshake is logged …
    _assert_nothing_secret(logged, started["token"], key, opts.api_secret)  # … not the token


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
