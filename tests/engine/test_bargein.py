"""Barge-in: the user talking over the agent stops its audio; the transcript keeps only
what was said. A short backchannel does not cut the agent off."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.conftest import Tenant
from tests.engine.conftest import Worker
from thinnest.client import AgentAudio, VoiceClient
from thinnest.store import sessions
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

LONG_GREETING = (
    "Welcome to the Thinnest demonstration line. I can answer questions about the weather, "
    "tell you what time it is, help you with your account, book a table at a restaurant, "
    "and explain how this voice platform works from the microphone to the loudspeaker. "
    "Take your time, there is no hurry at all, and ask me anything you like."
)
VOICED = 500.0


def silent_since(audio: AgentAudio, t: float, quiet: float = 0.3) -> float | None:
    """The first moment after ``t`` from which the agent stayed quiet for ``quiet`` s."""
    start = None
    for at, level in zip(audio.arrivals, audio.levels, strict=True):
        if at < t:
            continue
        if level > VOICED:
            start = None
        elif start is None:
            start = at
        elif at - start >= quiet:
            return start
    return None


def longest_quiet(audio: AgentAudio, start: float, end: float) -> float:
    """The longest span between ``start`` and ``end`` with no voiced agent frame."""
    voiced = [at for at, level in zip(audio.arrivals, audio.levels, strict=True) if level > VOICED]
    marks = [start, *(at for at in voiced if start < at < end), end]
    return max(b - a for a, b in zip(marks, marks[1:], strict=False))


async def _start_long_greeting(tenant: Tenant) -> dict[str, str]:
    agent = tenant.create_agent(greeting=LONG_GREETING, max_duration=120)
    resp = await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    return dict(resp.json())


async def _two_seconds_into_the_greeting(client: VoiceClient) -> None:
    t0 = time.monotonic()
    while client.audio.first_voiced_after(t0, VOICED) is None:
        assert time.monotonic() - t0 < 90, "the greeting never started"
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)


async def test_talking_over_the_agent_stops_it(
    worker: Worker, tenant: Tenant, database: Database, speak
) -> None:
    started = await _start_long_greeting(tenant)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await _two_seconds_into_the_greeting(client)
        # A backchannel is shorter than the interruption threshold: the agent keeps talking
        # (or, if it paused, resumes) rather than giving up its turn.
        await client.play_wav(speak("mm hmm", speed=200), silence_after=0.2)
        after = time.monotonic()
        await asyncio.sleep(3.0)
        resumed = client.audio.first_voiced_after(after, VOICED)
        assert resumed is not None, "a backchannel cut the agent off"

        barge = time.monotonic()
        await client.play_wav(
            speak("Stop, wait a moment please, I have a question."), silence_after=0.5
        )
        stopped = silent_since(client.audio, barge, quiet=1.0)
        assert stopped is not None, "the agent kept talking over the user"
        print(
            f"barge-in: agent audio stopped {stopped - barge:.3f} s after the user started talking"
        )
        assert stopped - barge < 2.5
        agent_turn = await client.next_event(60, type="transcript", role="agent")
        assert agent_turn.get("interrupted") is True
        assert len(agent_turn["text"]) < len(LONG_GREETING)

    for _ in range(100):  # the turn is written as the interruption is processed
        with database.session() as db:
            turns = sessions.get_session(db, started["session_id"]).turns
        if turns:
            break
        await asyncio.sleep(0.2)
    greeting = turns[0]
    assert greeting.role == "agent" and greeting.interrupted
    assert LONG_GREETING.startswith(greeting.text.rstrip(". ")[:20])


async def test_a_worded_backchannel_over_the_agent_is_not_a_turn_and_the_reply_goes_on(
    worker: Worker, tenant: Tenant, database: Database, speak
) -> None:
    """ "Okay, right." said over the agent is longer than the interruption threshold (it
    pauses the agent's audio) and Whisper writes it down: it used to end the greeting and
    become a turn the agent answered. Now the greeting resumes and plays to its end, as soon
    as the caller's voice ends: the pause is not the 1.5 s a noise waits on top of the VAD's
    0.55 s of silence."""
    started = await _start_long_greeting(tenant)
    async with VoiceClient(started["livekit_url"], started["token"]) as client:
        await _two_seconds_into_the_greeting(client)
        said = time.monotonic()
        await client.play_wav(speak("Okay, right.", speed=130), silence_after=0.2)
        greeting = await client.next_event(90, type="transcript", role="agent")
        assert greeting.get("interrupted") is not True, "the backchannel cut the greeting off"
        assert greeting["text"].rstrip(". ").endswith("ask me anything you like")
        assert client.audio.first_voiced_after(said + 3.0, VOICED) is not None
        # The backchannel's pause: its voice after the 0.5 s threshold, the VAD's 0.55 s of
        # silence, then 0.1 s (1.24-1.32 s here). Waiting out the noise's 1.5 s timeout as
        # well, it was 2.69 s.
        gap = longest_quiet(client.audio, said, said + 4.0)
        assert gap < 2.0, f"the reply stayed paused {gap:.2f} s after the backchannel"
        await asyncio.sleep(3.0)  # a turn would be transcribed and answered by now
        heard = [e for e in client.received if e.get("type") == "transcript"]
        assert [e["role"] for e in heard] == ["agent"], heard

    with database.session() as db:
        turns = sessions.get_session(db, started["session_id"]).turns
    assert [(t.role, t.interrupted) for t in turns] == [("agent", False)]


def test_levels_helper_finds_silence() -> None:
    audio = AgentAudio(
        arrivals=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        levels=[900, 900, 0, 0, 0, 0, 0],
        chunks=[np.zeros(1, np.int16)] * 7,
    )
    assert silent_since(audio, 0.0) == 0.2
