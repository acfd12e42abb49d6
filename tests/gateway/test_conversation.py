"""A spoken conversation over the WebSocket gateway with the real stack (API, LiveKit, worker)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import pytest

from tests.conftest import RunningApi, Tenant
from tests.engine.conftest import QUESTION, Worker, heard, wait_final
from tests.gateway.wsclient import Caller, create_agent, read_wav, rms
from thinnest.store.db import Database

pytestmark = pytest.mark.integration


async def _start(tenant: Tenant, agent: dict[str, object], **body: object) -> dict[str, str]:
    resp = await asyncio.to_thread(
        tenant.http.post,
        "/voice/start",
        json={"agent_id": agent["id"], **body},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _jitter_report(frames: list[tuple[float, bytes]], rate: int) -> dict[str, float]:
    """Inter-arrival statistics of the agent's 20 ms frames while it speaks."""
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:], strict=False)]
    gaps_ms = sorted(g * 1000 for g in gaps)
    audio_s = sum(len(d) for _, d in frames) / 2 / rate
    span = frames[-1][0] - frames[0][0]
    return {
        "frames": len(frames),
        "audio_s": audio_s,
        "arrival_span_s": span,
        "gap_mean_ms": statistics.fmean(gaps_ms),
        "gap_p50_ms": gaps_ms[len(gaps_ms) // 2],
        "gap_p95_ms": gaps_ms[int(len(gaps_ms) * 0.95)],
        "gap_p99_ms": gaps_ms[int(len(gaps_ms) * 0.99)],
        "gap_max_ms": gaps_ms[-1],
        "jitter_ms": statistics.pstdev(gaps_ms),
    }


# Generous: the first test of a run also waits for the worker to start (minutes under load).
@pytest.mark.timeout(900)
async def test_spoken_conversation_over_websocket_ends_at_max_duration(
    worker: Worker, api: RunningApi, tenant: Tenant, database: Database, speak
) -> None:
    agent = create_agent(
        tenant,
        greeting="Hello, this is Thinnest.",
        instructions="You are a friendly assistant. Answer in one short sentence.",
        closing_message="Our time is up. Goodbye!",
        max_duration=45,
    )
    started = await _start(tenant, agent)
    url = started["websocket_url"]
    assert url.startswith("ws://127.0.0.1:") and url.endswith(f"/ws/{started['session_id']}")
    rate = 16000
    caller = await Caller.open(
        url, additional_headers={"Authorization": f"Bearer {started['token']}"}
    )
    try:
        await caller.ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        caller.start_microphone()
        ready = await caller.event(30, type="ready")
        assert ready["sample_rate"] == rate and ready["session_id"] == started["session_id"]
        t0 = time.monotonic()
        greeting = await caller.event(90, type="transcript", role="agent")
        assert "Thinnest" in greeting["text"]
        await asyncio.sleep(3)  # let the greeting play out
        assert caller.voiced_after(t0) is not None, "no greeting audio"
        assert all(len(d) == rate * 20 // 1000 * 2 for _, d in caller.frames), "not 20 ms frames"
        greeting_frames = [(at, d) for at, d in caller.frames if at >= t0]

        caller.say(read_wav(speak(QUESTION), rate))
        user = await caller.event(90, type="transcript", role="user", final=True)
        assert heard(user["text"]), user["text"]
        reply = await caller.event(90, user["_at"], type="transcript", role="agent", final=True)
        assert reply["text"].strip()
        assert caller.speech_ended_at is not None
        voiced = caller.voiced_after(caller.speech_ended_at)
        assert voiced is not None, "no agent audio after the question"
        print(f"end of speech -> first agent audio: {voiced - caller.speech_ended_at:.3f} s")

        ended = await caller.event(90, type="call_ended")
        assert ended["reason"] == "max_duration"
        code, reason = await caller.wait_closed(30)
        assert (code, reason) == (1000, "call ended")
    finally:
        await caller.aclose()

    # Real time, not bursts: the voiced part of the greeting arrives over about its duration.
    voiced_frames = [(at, d) for at, d in greeting_frames if rms(d) > 100]
    report = _jitter_report(greeting_frames, rate)
    print("agent audio arrival (greeting):", {k: round(v, 3) for k, v in report.items()})
    assert len(voiced_frames) > 25, "under half a second of voiced greeting"
    voiced_span = voiced_frames[-1][0] - voiced_frames[0][0]
    assert voiced_span > 0.5 * len(voiced_frames) * 0.02, f"greeting arrived in a burst: {report}"

    row = await wait_final(database, started["session_id"])
    assert row.status == "ended" and row.end_reason == "max_duration"
    roles = [t.role for t in row.turns]
    assert roles[:3] == ["agent", "user", "agent"]
