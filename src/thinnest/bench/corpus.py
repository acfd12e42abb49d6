"""The spoken test set of the speech benchmark: fixed utterances, synthesised once, cached.

Each :class:`Utterance` says what is spoken, by which TTS (``espeak`` or ``piper``, through
the provider registry), with which voice and speed, and at which signal-to-noise ratio
white noise is mixed in (``None``: clean). The list is deterministic: utterance ``i`` is
the same on every run and machine, so the WAV files cached under ``cache_dir`` (16 kHz
mono, named by a hash of the spec) are reused by reruns.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import wave
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thinnest.config import Settings
from thinnest.providers import registry

__all__ = ["FULL_SET", "SAMPLE_RATE", "TEXTS", "Utterance", "load_corpus", "utterances"]

SAMPLE_RATE = 16000
_VERSION = 1  # bump when the synthesis changes, so stale cached files are not reused

TEXTS: tuple[str, ...] = (
    "Hello, I would like to book a table for two people tomorrow evening.",
    "Can you tell me the opening hours of the pharmacy on Main Street?",
    "Please cancel my appointment on Friday morning.",
    "What is the weather going to be like in Paris this weekend?",
    "I need to change the delivery address for my last order.",
    "How much does a return ticket to London cost?",
    "My internet connection keeps dropping every few minutes.",
    "Could you send me a copy of the invoice by email?",
    "I would like to speak to someone about my insurance claim.",
    "Set a reminder to call my sister at six o'clock.",
    "Is there a vegetarian option on the lunch menu today?",
    "The package arrived damaged and I want a refund.",
    "Please read me the last three messages from my inbox.",
    "Which platform does the next train to Boston leave from?",
    "Thank you, that is all I needed for now.",
    "I forgot my password and cannot log in to my account.",
)

# (tts provider, options) pairs: varied voices, pitches and speeds
_VOICES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("espeak", {"voice": "en-us", "words_per_minute": 160}),
    ("piper", {"speed": 1.0}),
    ("espeak", {"voice": "en-gb", "words_per_minute": 200, "pitch": 40}),
    ("piper", {"speed": 1.25}),
    ("espeak", {"voice": "en-us+f3", "words_per_minute": 140, "pitch": 65}),
    ("piper", {"speed": 0.85}),
    ("espeak", {"voice": "en-us+m3", "words_per_minute": 180}),
)
_NOISE_SNR_DB = 10.0
#: Utterances until every text has been said in every voice once (112): the default set.
#: At 32 utterances (≈ 330 words) one misheard utterance moves the WER by about a point.
FULL_SET = len(TEXTS) * len(_VOICES)


@dataclass(frozen=True)
class Utterance:
    """One spoken test utterance.

    Attributes:
        index: its position in the fixed list.
        text: what is said (the WER reference).
        tts: the TTS provider that speaks it.
        options: that provider's options (voice, speed, ...).
        snr_db: signal-to-noise ratio of the white noise mixed in; ``None`` for clean audio.
    """

    index: int
    text: str
    tts: str
    options: dict[str, Any]
    snr_db: float | None

    @property
    def label(self) -> str:
        """A short description, e.g. ``piper speed=1.25 +noise10dB``."""
        opts = " ".join(f"{k}={v}" for k, v in self.options.items())
        noise = f" +noise{self.snr_db:g}dB" if self.snr_db is not None else ""
        return f"{self.tts} {opts}{noise}"

    @property
    def key(self) -> str:
        """Hash of everything that shapes the audio: the cache file's name."""
        spec = {**asdict(self), "version": _VERSION, "rate": SAMPLE_RATE}
        spec.pop("index")
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        return f"{self.index:03d}-{digest[:16]}"


def utterances(count: int) -> list[Utterance]:
    """The first ``count`` utterances of the fixed test set.

    Texts and voices cycle at co-prime lengths, so every text is heard in several voices;
    every third utterance has white noise at 10 dB SNR.
    """
    result = []
    for i in range(count):
        tts, options = _VOICES[i % len(_VOICES)]
        snr = _NOISE_SNR_DB if i % 3 == 2 else None
        result.append(Utterance(i, TEXTS[i % len(TEXTS)], tts, dict(options), snr))
    return result


def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return pcm
    positions = np.arange(0, pcm.size, rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(pcm.size), pcm.astype(np.float32)).astype(np.int16)


def add_noise(pcm: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """``pcm`` with white Gaussian noise at ``snr_db`` (fixed ``seed``: reproducible)."""
    signal = pcm.astype(np.float64)
    loud = signal[np.abs(signal) > 0.01 * max(1.0, float(np.abs(signal).max()))]
    power = float(np.mean(loud**2)) if loud.size else 1.0
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), pcm.size)
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


async def _synthesise(engine: Any, text: str) -> np.ndarray:
    chunks = []
    async with engine.synthesize(text) as stream:
        async for audio in stream:
            chunks.append(np.frombuffer(audio.frame.data, dtype=np.int16))
    return _resample(np.concatenate(chunks), engine.sample_rate)


def _read(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def _write(path: Path, pcm: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())
    tmp.replace(path)  # a run killed mid-write leaves no half file behind


async def load_corpus(
    items: Iterable[Utterance], cache_dir: Path, settings: Settings
) -> list[tuple[Utterance, np.ndarray]]:
    """The audio of ``items`` (16 kHz mono int16), synthesised where not cached yet.

    Args:
        items: the utterances.
        cache_dir: where the WAV files are kept between runs.
        settings: for building the TTS providers.

    Returns:
        ``(utterance, pcm)`` pairs in order.
    """
    await asyncio.to_thread(cache_dir.mkdir, parents=True, exist_ok=True)
    engines: dict[str, Any] = {}
    result = []
    for item in items:
        path = cache_dir / f"{item.key}.wav"
        cached = await asyncio.to_thread(_read, path)
        if cached is not None:
            result.append((item, cached))
            continue
        spec = json.dumps([item.tts, item.options], sort_keys=True)
        if spec not in engines:
            engines[spec] = registry.build("tts", item.tts, item.options, settings=settings)
        pcm = await _synthesise(engines[spec], item.text)
        if item.snr_db is not None:
            pcm = add_noise(pcm, item.snr_db, seed=item.index)
        await asyncio.to_thread(_write, path, pcm)
        result.append((item, pcm))
    for engine in engines.values():
        await engine.aclose()
    return result
