"""Fixtures of the provider tests: a private models cache, spoken test audio, no network.

Speech is synthesised with the espeak-ng program (Debian package ``espeak-ng``), so the
STT tests need no recorded files. ``offline`` makes any connection to a non-loopback
address fail, proving that the offline providers never reach out.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import socket
import subprocess
import warnings
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from livekit.agents import llm

from livekit import rtc
from thinnest.config import Settings

_NO_KEYS: dict[str, Any] = {
    "openai_api_key": None,
    "openai_base_url": None,
    "deepgram_api_key": None,
    "google_api_key": None,
    "elevenlabs_api_key": None,
    "cartesia_api_key": None,
}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings on ``data_dir`` with every cloud key unset unless given."""
    return Settings(data_dir=data_dir, **{**_NO_KEYS, **overrides})


@llm.function_tool
async def get_weather(city: str) -> str:
    """Get the weather of a city.

    Args:
        city: the city's name.
    """
    return "sunny"


def weather_chat() -> llm.ChatContext:
    """What the cloud LLM tests send: a system line and the user's weather question."""
    ctx = llm.ChatContext()
    ctx.add_message(role="system", content="Be brief.")
    ctx.add_message(role="user", content="What is the weather in Paris?")
    return ctx


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int) -> AsyncIterator[None]:
    """Serve ``app`` on ``127.0.0.1:port`` for the duration of the block (the fake servers)."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield
    finally:
        await runner.cleanup()
        # A vendor SDK's HTTP pool may drop a keep-alive socket to this server without
        # closing it; collect it here, where it belongs, not in whichever later test the
        # garbage collector happens to run in (where it failed an unrelated test).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture(scope="session")
def models_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose models cache is private to this test session (built on first use)."""
    return make_settings(tmp_path_factory.mktemp("thinnest"))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse connections to anything but loopback for the duration of a test."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            raise OSError(f"network access to {host} in an offline test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield


@dataclass(frozen=True)
class Speech:
    """An utterance synthesised by espeak-ng.

    Attributes:
        text: what is said.
        pcm: 16-bit mono samples.
        sample_rate: their rate.
    """

    text: str
    pcm: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.pcm.size / self.sample_rate

    def frames(self, sample_rate: int | None = None, frame_ms: int = 20) -> list[rtc.AudioFrame]:
        """The audio as LiveKit frames, resampled to ``sample_rate`` if given."""
        pcm, rate = self.pcm, self.sample_rate
        if sample_rate is not None and sample_rate != rate:
            positions = np.arange(0, pcm.size, rate / sample_rate)
            pcm = np.interp(positions, np.arange(pcm.size), pcm).astype(np.int16)
            rate = sample_rate
        step = rate * frame_ms // 1000
        return [
            rtc.AudioFrame(pcm[i : i + step].tobytes(), rate, 1, pcm[i : i + step].size)
            for i in range(0, pcm.size, step)
        ]


def espeak(text: str, path: Path, *, voice: str = "en-us", wpm: int = 160) -> Speech:
    """Synthesise ``text`` with the espeak-ng program into ``path`` and load it."""
    binary = shutil.which("espeak-ng")
    assert binary, "the provider tests need espeak-ng: apt-get install espeak-ng"
    subprocess.run(
        [binary, "-v", voice, "-s", str(wpm), "-w", str(path), "--", text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(path)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return Speech(text=text, pcm=pcm, sample_rate=wav.getframerate())


@pytest.fixture(scope="session")
def booking(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """About four seconds of clear English."""
    return espeak(
        "Hello, I would like to book a table for two people tomorrow evening.",
        tmp_path_factory.mktemp("speech") / "booking.wav",
    )


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)] / max(1, len(ref))
