"""A Python client of a Thinnest session: join the room, speak from a WAV, hear the agent.

Used by ``thinnest call``, the benchmarks and the tests; works against any deployment::

    async with VoiceClient(livekit_url, token) as client:
        await client.play_wav("question.wav")
        async for event in client.events():
            print(event)
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from livekit import rtc

TOPIC = "thinnest"
SAMPLE_RATE = 48000
FRAME_MS = 10


@dataclass
class AgentAudio:
    """The agent's audio as received: frames with their arrival times (monotonic seconds)."""

    sample_rate: int = SAMPLE_RATE
    chunks: list[np.ndarray] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)

    def first_voiced_after(self, t: float, threshold: float = 500.0) -> float | None:
        """Arrival time of the first frame after ``t`` louder than ``threshold`` (RMS)."""
        for at, level in zip(self.arrivals, self.levels, strict=True):
            if at >= t and level > threshold:
                return at
        return None

    def pcm(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)


class VoiceClient:
    """One participant in a session's room."""

    def __init__(self, livekit_url: str, token: str) -> None:
        self.url = livekit_url
        self.token = token
        self.room = rtc.Room()
        self.audio = AgentAudio()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        #: called with every event as it arrives (does not consume :meth:`next_event`'s queue)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        #: every data packet of any topic, raw, as (topic, bytes)
        self.packets: list[tuple[str, bytes]] = []
        #: text of LiveKit's standard transcription streams (``lk.transcription``)
        self.transcriptions: list[str] = []
        self.source = rtc.AudioSource(SAMPLE_RATE, 1)
        self._readers: list[asyncio.Task[None]] = []
        self._streams: list[rtc.AudioStream] = []
        self.disconnected = asyncio.Event()
        self.speech_ended_at: float | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        self.room.on("data_received", self._on_data)
        self.room.on("track_subscribed", self._on_track)
        self.room.on("disconnected", lambda *_: self.disconnected.set())
        self.room.register_text_stream_handler("lk.transcription", self._on_transcription)
        await self.room.connect(self.url, self.token)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, options)

    async def aclose(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for stream in self._streams:
            await stream.aclose()
        await self.source.aclose()
        await self.room.disconnect()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.packets.append((packet.topic or "", bytes(packet.data)))
        if packet.topic != TOPIC:
            return
        try:
            message = json.loads(packet.data)
        except ValueError:
            return
        message["_received_at"] = time.monotonic()
        self.received.append(message)
        self._events.put_nowait(message)
        for listener in self.listeners:
            listener(message)

    def _on_transcription(self, reader: rtc.TextStreamReader, _identity: str) -> None:
        async def read() -> None:
            try:
                self.transcriptions.append(await reader.read_all())
            except rtc.StreamError:
                pass  # the room closed mid-stream: that transcription is incomplete

        self._readers.append(asyncio.get_running_loop().create_task(read()))

    def agent_attributes(self) -> dict[str, str]:
        """Attributes of the agent participant (``lk.agent.state`` among them)."""
        for participant in self.room.remote_participants.values():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return dict(participant.attributes)
        return {}

    def _on_track(self, track: rtc.Track, *_args: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._readers.append(asyncio.get_running_loop().create_task(self._read(track)))

    async def _read(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        self._streams.append(stream)
        async for ev in stream:
            samples = np.frombuffer(ev.frame.data, dtype=np.int16).copy()
            self.audio.chunks.append(samples)
            self.audio.arrivals.append(time.monotonic())
            self.audio.levels.append(
                float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
            )

    async def play_pcm(self, samples: np.ndarray, *, silence_after: float = 1.0) -> None:
        """Speak ``samples`` (int16 mono at 48 kHz) in real time, then silence."""
        per = SAMPLE_RATE * FRAME_MS // 1000
        padded = np.concatenate(
            [samples.astype(np.int16), np.zeros(int(SAMPLE_RATE * silence_after), dtype=np.int16)]
        )
        for start in range(0, len(padded) - per + 1, per):
            if start >= len(samples) and self.speech_ended_at is None:
                # The source still holds what it queued (up to a second): the speech ends
                # when that has gone out, not when its last frame was handed over.
                self.speech_ended_at = time.monotonic() + self.source.queued_duration
            frame = rtc.AudioFrame(padded[start : start + per].tobytes(), SAMPLE_RATE, 1, per)
            await self.source.capture_frame(frame)

    async def play_wav(self, path: str | Path, *, silence_after: float = 1.0) -> None:
        """Speak a 16-bit mono WAV file (any rate) in real time."""
        self.speech_ended_at = None
        await self.play_pcm(read_wav_48k(path), silence_after=silence_after)

    async def next_event(self, within: float, **match: Any) -> dict[str, Any]:
        """The next event whose fields equal ``match`` within ``within`` seconds (others are
        skipped)."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event matching {match} within {within} s")
            event = await asyncio.wait_for(self._events.get(), left)
            if all(event.get(k) == v for k, v in match.items()):
                return event

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self._events.get()
            yield event
            if event.get("type") == "call_ended":
                return


def read_wav_48k(path: str | Path) -> np.ndarray:
    """A 16-bit mono WAV as int16 samples at 48 kHz (LiveKit's high-quality resampler)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: 16-bit PCM WAV expected")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate == SAMPLE_RATE:
        return data
    resampler = rtc.AudioResampler(
        rate, SAMPLE_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
    )
    frames = resampler.push(rtc.AudioFrame(data.tobytes(), rate, 1, len(data)))
    frames += resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).copy()
