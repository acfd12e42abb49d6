"""Refusals and limits of the WebSocket gateway, each with its documented close code.

A dedicated API with tight limits, on the real LiveKit server and database; its agent name is
one no worker serves, so no voice engine joins these rooms (the gateway is what is tested).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.gateway.wsclient import Caller, refused
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.livekit.tokens import mint_participant_token
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

MAX_FRAME = 4096
MAX_RATE = 50
IDLE = 3.0


@pytest.fixture(scope="module")
def tight_api(
    livekit_server: LiveKitDevServer, database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    settings = make_settings(
        tmp_path_factory.mktemp("gateway-api"),
        livekit_server,
        agent_name=f"nobody-{secrets.token_hex(3)}",
        rate_limit_per_minute=10000,
        gateway_max_frame_bytes=MAX_FRAME,
        gateway_max_messages_per_second=MAX_RATE,
        gateway_idle_timeout=IDLE,
    )
    running = start_api(settings, database)
    yield running
    running.stop()


def _start(http: httpx.Client, agent_id: object) -> dict[str, str]:
    resp = http.post("/voice/start", json={"agent_id": agent_id})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _url(started: dict[str, str], **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"token": started["token"], **query}.items())
    return f"{started['websocket_url']}?{params}"


async def test_bad_tokens_and_sessions_are_refused_with_documented_codes(
    tight_api: RunningApi, tenant: Tenant, livekit_server: LiveKitDevServer, tmp_path: Path
) -> None:
    http = tight_api.client(tenant.key)
    agent = tenant.create_agent()
    one, two, ended = [await asyncio.to_thread(_start, http, agent["id"]) for _ in range(3)]
    resp = await asyncio.to_thread(http.post, f"/voice/sessions/{ended['session_id']}/end")
    assert resp.status_code == 200, resp.text
    base = one["websocket_url"]
    key, secret = livekit_server.options.api_key, livekit_server.options.api_secret

    def token(room: str, **kw: object) -> str:
        return mint_participant_token(
            api_key=key, api_secret=secret, room=room, identity="user", **kw
        )

    forged = mint_participant_token(
        api_key=key, api_secret="x" * 40, room=one["session_id"], identity="user"
    )
    expired = token(one["session_id"], now=time.time() - 700)
    unknown = "session_" + secrets.token_hex(8)
    cases = [
        (base, 4401, "missing token"),
        (f"{base}?token=garbage", 4401, "invalid token"),
        (f"{base}?token={forged}", 4401, "invalid token"),
        (f"{base}?token={expired}", 4401, "token expired"),
        (f"{base}?token={two['token']}", 4403, "another session"),
        (f"{base.rsplit('/', 1)[0]}/{unknown}?token={token(unknown)}", 4404, "unknown session"),
        (_url(ended), 4410, "session is ended"),
        (_url(one, sample_rate="11025"), 4400, "sample_rate must be one of"),
    ]
    for url, code, reason in cases:
        got_code, got_reason = await refused(url)
        assert got_code == code and reason in (got_reason or ""), (url, got_code, got_reason)
    # The token also works from the Authorization header (and this one joins).
    caller = await Caller.open(
        one["websocket_url"], additional_headers={"Authorization": f"Bearer {one['token']}"}
    )
    try:
        await caller.ws.send(json.dumps({"type": "start", "sample_rate": 8000}))
        ready = await caller.event(30, type="ready")
        assert ready["sample_rate"] == 8000 and ready["frame_ms"] == 20
        # A second connection as the same participant replaces the first (4409).
        second = await Caller.open(_url(one))
        await second.ws.send(json.dumps({"type": "start"}))
        await second.event(30, type="ready")
        assert await caller.wait_closed(30) == (
            4409,
            "another connection joined as this participant",
        )
        # Hanging up: a text {"type": "end"} closes normally.
        await second.ws.send(json.dumps({"type": "end"}))
        assert await second.wait_closed(30) == (1000, "hung up")
        await second.aclose()
    finally:
        await caller.aclose()
    http.close()


async def test_garbage_oversized_floods_and_idle_clients_are_closed_server_stays_healthy(
    tight_api: RunningApi, tenant: Tenant
) -> None:
    http = tight_api.client(tenant.key)
    agent = tenant.create_agent()

    # Garbage text is answered with error events; the connection stays usable.
    started = await asyncio.to_thread(_start, http, agent["id"])
    caller = await Caller.open(_url(started))
    try:
        for garbage in ("not json", "[1]", '{"type": "dance"}'):
            await caller.ws.send(garbage)
        await caller.ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await caller.event(30, type="ready")
        await caller.ws.send(json.dumps({"type": "start", "sample_rate": 8000}))  # too late
        await caller.ws.send(b"\x01\x02\x03")  # half a sample: kept until the rest comes
        await caller.ws.send(json.dumps({"type": "ping"}))
        await asyncio.sleep(1)
        errors = [e for e in caller.events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["bad_message"] * 4, errors
        assert "start must be the first message" in errors[-1]["message"]
        assert caller.ws.close_code is None, "garbage closed the connection"
        # An oversized frame closes with 1009.
        await caller.ws.send(bytes(MAX_FRAME + 2))
        code, reason = await caller.wait_closed(30)
        assert code == 1009 and str(MAX_FRAME) in (reason or ""), (code, reason)
    finally:
        await caller.aclose()

    # A flood of tiny messages over the rate limit closes with 1008.
    started = await asyncio.to_thread(_start, http, agent["id"])
    caller = await Caller.open(_url(started))
    try:
        await caller.ws.send(json.dumps({"type": "start"}))
        await caller.event(30, type="ready")
        with pytest.raises(Exception):  # noqa: B017 - the server closes while we flood
            for _ in range(10 * MAX_RATE):
                await caller.ws.send(b"\0\0")
            await asyncio.sleep(0)
            await caller.wait_closed(30)
            raise AssertionError("still open")
        assert caller.ws.close_code == 1008 and "messages a second" in caller.ws.close_reason
    finally:
        await caller.aclose()

    # A client that sends nothing is closed after the idle timeout (4408).
    started = await asyncio.to_thread(_start, http, agent["id"])
    t0 = time.monotonic()
    assert await refused(_url(started)) == (4408, f"no message for {IDLE:g} s")
    assert IDLE - 0.5 <= time.monotonic() - t0 <= IDLE + 15

    # The server is still healthy: health answers and a new session connects.
    assert (await asyncio.to_thread(http.get, "/healthz")).status_code == 200
    started = await asyncio.to_thread(_start, http, agent["id"])
    caller = await Caller.open(_url(started))
    try:
        await caller.ws.send(json.dumps({"type": "start"}))
        await caller.event(30, type="ready")
    finally:
        await caller.aclose()
    http.close()
