"""A WebSocket caller for the gateway tests: Python ``websockets``, nothing of ours."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livekit import rtc

FRAME_MS = 20


def create_agent(tenant: Any, **fields: Any) -> dict[str, Any]:
    """Create an agent with a patient client: the API's first agent validation imports the
    providers' modules, which takes long on a loaded machine."""
    body = {"name": f"agent-{secrets.token_hex(3)}", **fields}
    resp = tenant.http.post("/agents", json=body, timeout=180)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def read_wav(path: str | Path, rate: int) -> bytes:
    """A 16-bit mono WAV as PCM bytes at ``rate`` (the test resamples, not the gateway)."""
    with wave.open(str(path), "rb") as wav:
        source_rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    if source_rate == rate:
        return data.tobytes()
    resampler = rtc.AudioResampler(
        source_rate, rate, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
    )
    frames = resampler.push(rtc.AudioFrame(data.tobytes(), source_rate, 1, len(data)))
    frames += resampler.flush()
    return b"".join(bytes(f.data) for f in frames)


def rms(data: bytes) -> float:
    samples = np.frombuffer(data, dtype=np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


@dataclass
class Caller:
    """One WebSocket client: a reader task records audio frames and events as they arrive."""

    ws: ClientConnection
    rate: int
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _new: asyncio.Condition = field(default_factory=asyncio.Condition)
    speech_ended_at: float | None = None
    _reader: asyncio.Task[None] | None = None
    _mic: asyncio.Task[None] | None = None
    _speech: bytes = b""

    @classmethod
    async def open(cls, url: str, *, rate: int = 16000, **kwargs: Any) -> Caller:
        ws = await connect(url, open_timeout=20, **kwargs)
        caller = cls(ws, rate)
        caller._reader = asyncio.get_running_loop().create_task(caller._read())
        return caller

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.frames.append((now, message))
                else:
                    event = json.loads(message)
                    event["_at"] = now
                    self.events.append(event)
                async with self._new:
                    self._new.notify_all()
        except ConnectionClosed:
            pass
        async with self._new:
            self._new.notify_all()

    async def event(self, within: float, since: float = 0.0, **match: Any) -> dict[str, Any]:
        """The first event received at or after ``since`` whose fields equal ``match``."""

        def found() -> dict[str, Any] | None:
            for event in self.events:
                if event["_at"] >= since and all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        async def wait() -> dict[str, Any]:
            async with self._new:
                while (event := found()) is None:
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"closed before {match}: {self.closed_with()}")
                    await self._new.wait()
                return event

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(f"no event {match} within {within} s: {self.events}") from None

    def start_microphone(self) -> None:
        """Send 20 ms frames in real time, as a microphone would: queued speech, else silence."""
        self._mic = asyncio.get_running_loop().create_task(self._microphone())

    def say(self, pcm: bytes) -> None:
        """Speak ``pcm`` next (the microphone sends silence before and after)."""
        self.speech_ended_at = None
        self._speech += pcm

    async def _microphone(self) -> None:
        size = self.rate * FRAME_MS // 1000 * 2
        silence = bytes(size)
        start = time.monotonic()
        sent = 0
        try:
            while True:
                if self._speech:
                    frame, self._speech = self._speech[:size], self._speech[size:]
                    frame = frame.ljust(size, b"\0")
                    if not self._speech:
                        self.speech_ended_at = time.monotonic()
                else:
                    frame = silence
                await self.ws.send(frame)
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * FRAME_MS / 1000 - time.monotonic()))
        except ConnectionClosed:
            pass

    def voiced_after(self, t: float, threshold: float = 500.0) -> float | None:
        for at, data in self.frames:
            if at >= t and rms(data) > threshold:
                return at
        return None

    def closed_with(self) -> tuple[int | None, str | None]:
        return self.ws.close_code, self.ws.close_reason

    async def wait_closed(self, within: float) -> tuple[int | None, str | None]:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), within)
        return self.closed_with()

    async def aclose(self) -> None:
        for task in (self._mic, self._reader):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._mic, self._reader) if t is not None), return_exceptions=True
        )
        await self.ws.close()


async def refused(url: str, **kwargs: Any) -> tuple[int | None, str | None]:
    """Connect, and return the close code and reason the gateway answers with."""
    async with connect(url, open_timeout=20, **kwargs) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 20)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason
