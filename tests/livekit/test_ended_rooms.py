"""An ended session's token (valid for minutes more) never opens its room again: the dev
LiveKit creates no room on join, and where a LiveKit does (``room.auto_create`` on, its
default), the API's backstop closes a finished session's room as soon as it is reopened."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from livekit import rtc
from tests.conftest import RunningApi, Tenant, free_port, loopback_livekit, make_settings, start_api
from thinnest.store import keys
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


async def _join(url: str, token: str) -> rtc.Room:
    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, token), 20)
    return room


async def test_an_ended_sessions_token_cannot_open_its_room(
    api: RunningApi, tenant: Tenant
) -> None:
    agent = tenant.create_agent()
    started = (
        await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    ).json()
    room = await _join(started["livekit_url"], started["token"])  # the live session: admitted
    await room.disconnect()
    ended = await asyncio.to_thread(
        tenant.http.post, f"/voice/sessions/{started['session_id']}/end"
    )
    assert ended.status_code == 200, ended.text
    with pytest.raises(rtc.ConnectError):
        again = await _join(started["livekit_url"], started["token"])
        await again.disconnect()


async def test_a_reopened_room_of_an_ended_session_is_closed_by_the_backstop(
    database: Database, tmp_path: Path
) -> None:
    # A LiveKit set up as many production ones are (rooms created on join), posting its
    # webhooks to an API of this test's own.
    api_port = free_port()
    livekit = loopback_livekit(
        tmp_path / "livekit", webhook_urls=(f"http://127.0.0.1:{api_port}/livekit/webhook",)
    )
    livekit.options = dataclasses.replace(livekit.options, auto_create=True)
    livekit.start()
    running = start_api(make_settings(tmp_path, livekit, api_port=api_port), database)
    try:
        with database.session() as db:
            owner = keys.get_or_create_owner(db, f"reopen-{tmp_path.name}")
            _row, key = keys.create_key(db, owner)
        with running.client(key) as http:
            agent = http.post("/agents", json={"name": "reopen"}).json()
            started = http.post("/voice/start", json={"agent_id": agent["id"]}).json()
            assert http.post(f"/voice/sessions/{started['session_id']}/end").status_code == 200
        room = rtc.Room()
        closed = asyncio.Event()
        room.on("disconnected", lambda *_: closed.set())
        try:
            await asyncio.wait_for(room.connect(started["livekit_url"], started["token"]), 20)
        except (rtc.ConnectError, TimeoutError):
            return  # closed while the join was under way: refused all the same
        try:
            # LiveKit let the old token in (it created the room); the API closes it at once.
            await asyncio.wait_for(closed.wait(), 15)
        finally:
            await room.disconnect()
    finally:
        running.stop()
        livekit.stop()
