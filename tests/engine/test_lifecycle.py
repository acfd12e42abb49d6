"""How calls end, each with the real stack: the API's end (with recording), the user
leaving, and the worker killed mid-call (the API's backstop finalises the session)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from datetime import datetime
from pathlib import Path

import av
import httpx
import pytest

from tests.conftest import RunningApi, Tenant, make_settings, start_api
from tests.engine.conftest import Worker, start_worker, stop_worker, wait_final
from thinnest.client import VoiceClient
from thinnest.livekit.devserver import LiveKitDevServer
from thinnest.store import sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


async def _start(http: httpx.Client, agent_id: str, **body: object) -> dict[str, str]:
    resp = await asyncio.to_thread(http.post, "/voice/start", json={"agent_id": agent_id, **body})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_api_end_sends_call_ended_and_keeps_the_recording(
    worker: Worker, tenant: Tenant, database: Database, speak
) -> None:
    agent = tenant.create_agent(greeting="Hi! I am recording this call.", max_duration=120)
    started = await _start(tenant.http, agent["id"], recording=True)
    sid = started["session_id"]
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await client.next_event(90, type="transcript", role="agent")
        await client.play_wav(speak("How many legs does a spider have?"))
        await client.next_event(60, type="transcript", role="user", final=True)
        # End once the agent has answered. The recording runs on about 2 s past the call's
        # end after an answer (measured the same before and after the transcript turn
        # detection); ended while a reply is still being prepared, the session takes longer
        # to close and the recording's tail of silence grows with the machine's load (4.9 s
        # in one loaded CI run), which this length check would count.
        await client.next_event(60, type="transcript", role="agent")
        joined = client.received[0]["_received_at"]
        resp = await asyncio.to_thread(tenant.http.post, f"/voice/sessions/{sid}/end")
        assert resp.status_code == 200, resp.text
        ended = await client.next_event(15, type="call_ended")
        call_seconds = time.monotonic() - joined
        assert ended["reason"] == "ended_by_api"
        await asyncio.wait_for(client.disconnected.wait(), 20)

    row = await wait_final(database, sid)
    assert (row.status, row.end_reason) == ("ended", "ended_by_api")
    for _ in range(100):  # the recording is moved into place as the job shuts down
        with database.session() as db:
            path = sessions.get_session(db, sid).recording_path
        if path:
            break
        await asyncio.sleep(0.2)
    assert path and await asyncio.to_thread(os.path.isfile, path), "no recording stored"
    # A caller's voice is its owner's only on disk (docs/security.md, "Recordings").
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    download = await asyncio.to_thread(tenant.http.get, f"/voice/sessions/{sid}/recording")
    assert download.status_code == 200
    assert download.headers["content-type"] == "audio/ogg"
    with av.open(path) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 2
        seconds = float(container.duration or 0) / 1_000_000
    print(f"recording {seconds:.1f} s for a call of about {call_seconds:.1f} s")
    assert abs(seconds - call_seconds) < max(4.0, 0.3 * call_seconds)
    # The console follows the transcript by the recording's start: every turn falls inside it.
    detail = (await asyncio.to_thread(tenant.http.get, f"/voice/sessions/{sid}")).json()
    assert detail["recording_started_at"], "the recording's start time is not stored"
    origin = datetime.fromisoformat(detail["recording_started_at"])
    offsets = [
        (datetime.fromisoformat(t["started_at"]) - origin).total_seconds()
        for t in detail["transcript"]
        if t["started_at"]
    ]
    assert offsets and all(-0.5 <= o <= seconds for o in offsets), (offsets, seconds)


def test_recording_is_the_owners_only(make_tenant) -> None:  # type: ignore[no-untyped-def]
    alice, bob = make_tenant(), make_tenant()
    started = bob.http.post("/voice/start", json={"agent_id": bob.create_agent()["id"]}).json()
    assert alice.http.get(f"/voice/sessions/{started['session_id']}/recording").status_code == 404
    missing = bob.http.get(f"/voice/sessions/{started['session_id']}/recording")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "recording_not_found"


async def test_user_leaving_ends_the_session(
    worker: Worker, tenant: Tenant, database: Database
) -> None:
    agent = tenant.create_agent(greeting="Hello there.")
    started = await _start(tenant.http, agent["id"])
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await client.next_event(90, type="transcript", role="agent")
    row = await wait_final(database, started["session_id"], within=30)
    assert (row.status, row.end_reason) == ("ended", "user_left")
    assert row.turns and row.turns[0].role == "agent"


async def test_killed_worker_is_caught_by_the_backstop(
    api: RunningApi,
    livekit_server: LiveKitDevServer,
    database: Database,
    database_url: str,
    tenant: Tenant,
    tmp_path: Path,
    speak,
) -> None:
    # A worker and an API of their own (agent name "thinnest-kill"), so nothing else is hit;
    # the session's API still receives LiveKit's webhooks and runs the backstop.
    doomed = start_worker(
        livekit_server,
        database_url,
        tmp_path / "doomed",
        env={"THINNEST_AGENT_NAME": "thinnest-kill"},
    )
    side = start_api(
        make_settings(tmp_path, livekit_server, agent_name="thinnest-kill", require_worker=True),
        database,
    )
    try:
        agent = tenant.create_agent(greeting="Hello, I will not last.", max_duration=120)
        with side.client(tenant.key) as http:
            started = await _start(http, agent["id"])
        async with VoiceClient(started["livekit_url"], started["token"]) as client:
            await client.next_event(90, type="transcript", role="agent")
            await client.play_wav(speak("How many legs does a spider have?"))
            await client.next_event(60, type="transcript", role="user", final=True)
            with database.session() as db:
                turns = sessions.get_session(db, started["session_id"]).turns
                stored_before = sorted((t.seq, t.role, t.text) for t in turns)
            os.killpg(doomed.process.pid, signal.SIGKILL)
            ended = await client.next_event(60, type="call_ended")
            assert ended["reason"] == "error"
        row = await wait_final(database, started["session_id"])
        assert (row.status, row.end_reason) == ("error", "error")
        # Every turn stored before the kill is there, unchanged, after the backstop.
        after = sorted((t.seq, t.role, t.text) for t in row.turns)
        assert stored_before and after[: len(stored_before)] == stored_before
        assert [t.role for t in row.turns][:1] == ["agent"]  # stored turns survived
        assert "Hello" in row.turns[0].text
    finally:
        side.stop()
        stop_worker(doomed)
