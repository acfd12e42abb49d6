"""The benchmark's caller: a :class:`~thinnest.client.VoiceClient` that times each turn.

The microphone never stops: a task feeds the room 10 ms frames in real time, speech when
an utterance is queued and digital silence otherwise, as a real microphone would (the
agent's VAD needs the silence to see the end of speech). The end of the user's speech is
the moment its last sample leaves the audio source's queue: the time its last frame was
captured plus what :class:`rtc.AudioSource` still holds (a short 100 ms queue), not the
moment Python handed the frame over.

A turn's **voice-to-voice** latency is the time from that end of speech to the arrival of
the first loud frame (RMS > 500) of the agent's answer. Its **continuity**: within the
answer (first to last loud frame), frames that arrived more than 60 ms after the previous
one (late) and, when the answer is a continuous tone (the ``fixed`` TTS), frames within it
that are near-silent (lost audio concealed by the decoder).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livekit import rtc
from thinnest.client import SAMPLE_RATE, VoiceClient

__all__ = ["ProbeClient", "TurnResult", "to_48k"]

_FRAME = SAMPLE_RATE // 100
LOUD = 500.0
LATE_GAP = 0.060


def to_48k(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 mono at ``rate`` to 48 kHz with LiveKit's resampler."""
    if rate == SAMPLE_RATE:
        return pcm
    resampler = rtc.AudioResampler(
        rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
    )
    frames = resampler.push(rtc.AudioFrame(pcm.astype(np.int16).tobytes(), rate, 1, len(pcm)))
    frames += resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).copy()


@dataclass
class TurnResult:
    """One measured turn (times in ms; ``None`` when the agent did not answer in time)."""

    index: int
    text: str
    v2v_ms: float | None
    reply_ms: float = 0.0
    frames: int = 0
    late_frames: int = 0
    quiet_frames: int = 0
    engine: dict[str, float] = field(default_factory=dict)
    speech_end: float = 0.0
    reply_end: float = 0.0


class ProbeClient(VoiceClient):
    """A caller with an always-on microphone and per-turn timing."""

    def __init__(self, livekit_url: str, token: str) -> None:
        super().__init__(livekit_url, token)
        self.source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=100)
        self._speech: asyncio.Queue[tuple[np.ndarray, asyncio.Future[float]]] = asyncio.Queue()
        self._mic: asyncio.Task[None] | None = None
        self.connected_at = 0.0  # monotonic time the caller's connection was up
        self.agent_joined_at: float | None = None  # monotonic time the agent joined

    async def connect(self) -> None:
        self.room.on("participant_connected", self._on_participant)
        self.connected_at = time.monotonic()
        await super().connect()
        self.connected_at = time.monotonic()
        for participant in self.room.remote_participants.values():
            self._on_participant(participant)  # an agent there before the caller
        self._mic = asyncio.get_running_loop().create_task(self._microphone())

    def _on_participant(self, participant: rtc.RemoteParticipant) -> None:
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            self.agent_joined_at = self.agent_joined_at or time.monotonic()

    def join_ms(self) -> float | None:
        """How long after the caller's connection (published microphone) the agent joined;
        0 when it was in the room first; ``None`` until it joins."""
        if self.agent_joined_at is None:
            return None
        return max(0.0, 1000 * (self.agent_joined_at - self.connected_at))

    async def aclose(self) -> None:
        if self._mic is not None:
            self._mic.cancel()
            await asyncio.gather(self._mic, return_exceptions=True)
        await super().aclose()

    async def _microphone(self) -> None:
        silence = np.zeros(_FRAME, dtype=np.int16).tobytes()
        while True:
            if self._speech.empty():
                await self.source.capture_frame(rtc.AudioFrame(silence, SAMPLE_RATE, 1, _FRAME))
                continue
            pcm, done = self._speech.get_nowait()
            for start in range(0, len(pcm), _FRAME):
                chunk = pcm[start : start + _FRAME]
                if len(chunk) < _FRAME:
                    chunk = np.concatenate([chunk, np.zeros(_FRAME - len(chunk), np.int16)])
                await self.source.capture_frame(
                    rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, _FRAME)
                )
            done.set_result(time.monotonic() + self.source.queued_duration)

    async def say(self, pcm: np.ndarray) -> float:
        """Speak ``pcm`` (int16, 48 kHz); returns when its last sample has been sent
        (its monotonic time)."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._speech.put_nowait((pcm, done))
        end = await done
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return end

    def _loud_after(self, t: float) -> list[tuple[float, float]]:
        audio = self.audio
        return [
            (at, lv)
            for at, lv in zip(audio.arrivals, audio.levels, strict=False)
            if at >= t and lv > LOUD
        ]

    async def wait_answer(self, after: float, *, within: float) -> float | None:
        """Arrival time of the first loud agent frame after ``after``, or ``None``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            first = self.audio.first_voiced_after(after, LOUD)
            if first is not None:
                return first
            await asyncio.sleep(0.01)
        return None

    async def wait_quiet(self, quiet: float, *, within: float) -> float:
        """Until no loud frame has arrived for ``quiet`` s; returns the last loud arrival."""
        deadline = time.monotonic() + within
        last = 0.0
        while time.monotonic() < deadline:
            loud = [
                at
                for at, lv in zip(self.audio.arrivals, self.audio.levels, strict=False)
                if lv > LOUD
            ][-1:]
            last = loud[0] if loud else 0.0
            if last and time.monotonic() - last >= quiet:
                break
            await asyncio.sleep(0.05)
        return last

    def continuity(self, start: float, end: float, *, tone: bool) -> tuple[int, int, int]:
        """(frames, late frames, near-silent frames) of the answer between two arrivals."""
        span = [
            (at, lv)
            for at, lv in zip(self.audio.arrivals, self.audio.levels, strict=False)
            if start <= at <= end
        ]
        late = sum(1 for (a, _), (b, _) in zip(span, span[1:], strict=False) if b - a > LATE_GAP)
        quiet = sum(1 for _, lv in span if lv <= LOUD) if tone else 0
        return len(span), late, quiet

    async def turn(
        self, index: int, text: str, pcm: np.ndarray, *, tone: bool, quiet: float, within: float
    ) -> TurnResult:
        """Speak, time the answer, wait until the agent is done."""
        end = await self.say(pcm)
        first = await self.wait_answer(end, within=within)
        result = TurnResult(index, text, None, speech_end=end)
        if first is None:
            return result
        result.v2v_ms = (first - end) * 1000
        last = await self.wait_quiet(quiet, within=within)
        result.reply_end = last
        result.reply_ms = (last - first) * 1000
        result.frames, result.late_frames, result.quiet_frames = self.continuity(
            first, last, tone=tone
        )
        return result

    def engine_metrics(self, start: float, end: float) -> dict[str, float]:
        """The engine's ``metrics`` events received between two times, merged (seconds→ms)."""
        merged: dict[str, float] = {}
        for event in self.received:
            if event.get("type") != "metrics" or not start <= event["_received_at"] < end:
                continue
            for key, value in event.items():
                if isinstance(value, int | float) and not key.startswith("_"):
                    merged.setdefault(key, float(value) * 1000)
        return merged


def describe(result: TurnResult) -> dict[str, Any]:
    """A turn as JSON."""
    return {
        "index": result.index,
        "text": result.text,
        "v2v_ms": result.v2v_ms,
        "reply_ms": result.reply_ms,
        "frames": result.frames,
        "late_frames": result.late_frames,
        "quiet_frames": result.quiet_frames,
        "engine_ms": result.engine,
    }
