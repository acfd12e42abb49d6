"""The documented Python client snippet (docs/clients.md), run as written against the real stack:
a track published with no options (source ``unknown``) is heard, answered, and ended."""

from __future__ import annotations

import ast
import asyncio
import json
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livekit import rtc
from tests.conftest import Tenant
from tests.engine.conftest import QUESTION, Worker, heard, wait_final
from thinnest.store.db import Database

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
RATE = 16000
FRAME = RATE // 100  # 10 ms
#: int16 RMS above which the agent's audio is speech, not silence (its speech measures ~1000+).
VOICED_RMS = 300.0


def documented_block(heading: str, language: str) -> str:
    """The first ``language`` code block under the ``## heading`` of docs/clients.md."""
    text = DOCS.read_text()
    section = text[text.index(f"\n## {heading}") :]
    start = section.index(f"```{language}\n") + len(language) + 4
    return section[start : section.index("```", start)]


def _pcm16k(path: Path) -> np.ndarray:
    """A 16-bit mono WAV (espeak-ng writes 22.05 kHz) as int16 samples at 16 kHz."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    resampler = rtc.AudioResampler(rate, RATE, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(rtc.AudioFrame(data.tobytes(), rate, 1, len(data)))
    frames += resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


class Microphone:
    """Feeds the snippet's ``source`` in real time: silence, or the speech it is given."""

    def __init__(self, source: rtc.AudioSource) -> None:
        self.source = source
        self.queued = np.zeros(0, dtype=np.int16)
        self.said = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def say(self, samples: np.ndarray) -> None:
        self.said.clear()
        self.queued = samples

    async def _run(self) -> None:
        silence = np.zeros(FRAME, dtype=np.int16)
        while True:
            if len(self.queued):
                chunk, self.queued = self.queued[:FRAME], self.queued[FRAME:]
                chunk = np.pad(chunk, (0, FRAME - len(chunk)))
                if not len(self.queued):
                    self.said.set()
            else:
                chunk = silence
            await self.source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, FRAME))


# The first call of a session waits for the worker's start too (minutes on a loaded CI).
@pytest.mark.timeout(600)
async def test_the_python_snippet_publishes_without_options_and_talks(
    worker: Worker, tenant: Tenant, database: Database, speak
) -> None:
    # The real STT hears the question; a fixed LLM answers at once (what is said back does not
    # matter here, that the caller is heard and answered aloud does).
    agent = tenant.create_agent(
        greeting="Hello, this is Thinnest.",
        instructions="Answer in one short sentence.",
        providers={"llm": {"name": "fixed", "options": {"reply": "A spider has eight legs."}}},
        max_duration=120,
    )
    resp = await asyncio.to_thread(tenant.http.post, "/voice/start", json={"agent_id": agent["id"]})
    assert resp.status_code == 200, resp.text
    started = resp.json()

    received: list[dict[str, Any]] = []
    arrival = asyncio.Event()
    levels: list[tuple[float, float]] = []  # (arrival, RMS) of every agent audio frame
    readers: list[asyncio.Task[None]] = []

    async def read(track: rtc.Track) -> None:
        async for event in rtc.AudioStream(track, sample_rate=RATE, num_channels=1):
            samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            levels.append((time.monotonic(), float(np.sqrt(np.mean(samples**2)))))

    def on_track(track: rtc.Track, *_: object) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            readers.append(asyncio.create_task(read(track)))

    def on_message(packet: rtc.DataPacket) -> None:
        received.append(json.loads(packet.data))
        arrival.set()

    async def arrived(within: float, after: int = 0, **match: object) -> tuple[int, dict[str, Any]]:
        """The first message from index ``after`` on whose fields equal ``match``."""
        async with asyncio.timeout(within):
            while True:
                for i in range(after, len(received)):
                    if all(received[i].get(k) == v for k, v in match.items()):
                        return i, received[i]
                arrival.clear()
                await arrival.wait()

    # The snippet exactly as docs/clients.md shows it, with this test's url, token and handlers.
    snippet = documented_block("Python", "python")
    assert "publish_track(track)\n" in snippet and "TrackPublishOptions" not in snippet
    scope: dict[str, Any] = {
        "url": started["livekit_url"],
        "token": started["token"],
        "on_track": on_track,
        "on_message": on_message,
    }
    code = compile(snippet, str(DOCS), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    await eval(code, scope)  # noqa: S307  (our own documentation, the code under test)
    room: rtc.Room = scope["room"]
    microphone = Microphone(scope["source"])
    try:
        (publication,) = room.local_participant.track_publications.values()
        assert isinstance(publication, rtc.LocalTrackPublication)
        assert publication.source == rtc.TrackSource.SOURCE_UNKNOWN  # the case under test
        # A video track of no source passes the grant too (it names sources, not kinds):
        # the engine must never take it (docs/security.md, "Caller tracks").
        camera = rtc.VideoSource(64, 64)
        camera.capture_frame(rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA, bytes(64 * 64 * 4)))
        video = await room.local_participant.publish_track(
            rtc.LocalVideoTrack.create_video_track("video", camera)
        )

        speaking, _ = await arrived(180, type="agent_state", state="speaking")
        _, greeting = await arrived(30, type="transcript", role="agent")
        assert "Thinnest" in greeting["text"]
        listening, _ = await arrived(60, after=speaking, type="agent_state", state="listening")
        assert any(rms > VOICED_RMS for _, rms in levels), "no greeting audio"

        microphone.say(_pcm16k(speak(QUESTION)))
        await asyncio.wait_for(microphone.said.wait(), 30)
        said_at = time.monotonic()
        said, after = "", listening
        for _ in range(3):  # the question's words, in one final transcript or a few
            at, user = await arrived(90, after=after, type="transcript", role="user", final=True)
            said, after = f"{said} {user['text']}", at + 1
            if heard(said):
                break
        assert heard(said), said
        _, answer = await arrived(90, after=after, type="transcript", role="agent")
        assert "eight" in answer["text"]
        for _ in range(100):  # the answer's audio follows its transcript
            if any(at > said_at and rms > VOICED_RMS for at, rms in levels):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no agent audio after the question")

        end = await asyncio.to_thread(
            tenant.http.post, f"/voice/sessions/{started['session_id']}/end"
        )
        assert end.status_code == 200, end.text
        _, ended = await arrived(30, type="call_ended")
        assert ended["reason"] == "ended_by_api" and ended["duration"] > 0
        # The agent took the audio; in all this time it never subscribed to the video.
        await asyncio.wait_for(publication.wait_for_subscription(), 5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(video.wait_for_subscription(), 1)
    finally:
        microphone.task.cancel()
        for task in readers:
            task.cancel()
        await room.disconnect()

    row = await wait_final(database, started["session_id"])
    roles = [t.role for t in row.turns]  # stored: the greeting, the caller, the answer
    assert roles[0] == "agent" and "agent" in roles[roles.index("user") :], roles
