"""A real conversation: API, LiveKit server, worker with the offline stack, rtc client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.conftest import Tenant
from tests.engine.conftest import Worker, heard, wait_final
from thinnest.client import VoiceClient
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


async def _start(tenant: Tenant, agent: dict[str, object], **body: object) -> dict[str, str]:
    resp = await asyncio.to_thread(
        tenant.http.post, "/voice/start", json={"agent_id": agent["id"], **body}
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_greets_listens_and_answers_then_ends_at_max_duration(
    worker: Worker, tenant: Tenant, database: Database, speak
) -> None:
    agent = tenant.create_agent(
        greeting="Hello, this is Thinnest.",
        instructions="You are a friendly assistant. Answer in one short sentence.",
        closing_message="Our time is up. Goodbye!",
        max_duration=40,
    )
    started = await _start(tenant, agent)
    t0 = time.monotonic()
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        greeting = await client.next_event(90, type="transcript", role="agent")
        assert "Thinnest" in greeting["text"]
        await asyncio.sleep(2.5)  # let the greeting play out
        assert client.audio.first_voiced_after(t0) is not None, "no greeting audio"

        # One sentence long enough (about 3 s) for interim results even on a busy machine.
        await client.play_wav(speak("Please tell me quickly how many legs does a spider have?"))
        user = await client.next_event(60, type="transcript", role="user", final=True)
        assert heard(user["text"]), user["text"]
        # Interim results came first, while the question was being spoken.
        partial = [
            m
            for m in client.received
            if m["type"] == "transcript" and m["role"] == "user" and m["final"] is False
        ]
        assert partial and partial[0]["timestamp"] <= user["timestamp"], client.received
        reply = await client.next_event(90, type="transcript", role="agent")
        assert reply["text"].strip()
        assert client.speech_ended_at is not None
        voiced = client.audio.first_voiced_after(client.speech_ended_at)
        assert voiced is not None, "no agent audio after the question"
        print(f"end of speech -> first agent audio: {voiced - client.speech_ended_at:.3f} s")

        # LiveKit's standard agent state and transcription streams (useVoiceAssistant).
        assert client.agent_attributes().get("lk.agent.state") in {
            "listening",
            "thinking",
            "speaking",
        }
        assert any("Thinnest" in text for text in client.transcriptions)
        states = {m["state"] for m in client.received if m["type"] == "agent_state"}
        assert {"listening", "speaking"} <= states

        ended = await client.next_event(60, type="call_ended")
        assert ended["reason"] == "max_duration"
        assert 30 <= ended["duration"] <= 60
        await asyncio.wait_for(client.disconnected.wait(), 20)
        # Whoever reads every data packet sees only our JSON events on them.
        for _topic, raw in client.packets:
            assert json.loads(raw)["type"] in {
                "transcript",
                "call_ended",
                "agent_state",
                "tool_call",
                "metrics",
                "error",
            }

    row = await wait_final(database, started["session_id"])
    assert row.status == "ended" and row.end_reason == "max_duration"
    roles = [t.role for t in row.turns]
    assert roles[:3] == ["agent", "user", "agent"]
    assert heard(row.turns[1].text), row.turns[1].text


@pytest.mark.parametrize("context", [True, False], ids=["context", "no-context"])
async def test_the_caller_is_heard_with_the_names_the_agent_said(
    worker: Worker, tenant: Tenant, speak, context: bool
) -> None:
    # The session hands the greeting to the call's STT, which then spells the name the
    # agent's way; without it Whisper writes its own spelling (Jackson).
    agent = tenant.create_agent(
        greeting="Our advisers today are Jaxon and Maddisyn. Who would you like?",
        instructions="You are a receptionist. Answer in one short sentence.",
        max_duration=40,
        providers={"stt": {"name": "whisper", "options": {"context": context}}},
    )
    started = await _start(tenant, agent)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await client.next_event(90, type="transcript", role="agent")
        await asyncio.sleep(4.5)  # let the greeting play out: it is in the context once said
        await client.play_wav(speak("I want to talk to Jaxon.", speed=160))
        user = await client.next_event(60, type="transcript", role="user", final=True)
        assert heard(user["text"], "I want to talk to", at_least=0.8), user["text"]
        assert ("jaxon" in user["text"].lower()) is context, user["text"]
