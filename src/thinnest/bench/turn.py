"""``thinnest bench turn``: how each turn detector judges a finished sentence and a pause.

The session asks its turn detector whether the user is done each time they fall silent:
"yes" ends the turn ``endpointing_min_delay`` after the speech, "no" waits up to
``endpointing_max_delay`` for more. A good detector says yes after a finished sentence and
no at a pause inside one. This benchmark puts both questions to each detector on the clean
utterances of the speech corpus (``bench speech``'s cached audio, every one a finished
sentence):

- **end**: the audio up to the utterance's last loud sample (the sentence is finished);
- **pause**: the audio up to the middle one of its inner gaps between words (at least
  60 ms of quiet, not in the first 0.5 s nor the last 0.3 s): the sentence goes on.

Each detector hears what it hears in a call:

- ``livekit`` (the audio model ``turn-detector-v1-mini``): the last 1.2 s of audio, the
  window its local transport keeps, ending 0.2 s into the silence, when livekit-agents asks
  (after 200 ms of silence);
- ``transcript``: the words whisper ``tiny.en`` (the default STT) makes of the audio up to
  that point, with the silence the STT's VAD waits for after it;
- ``smart-turn`` (Pipecat's Smart Turn v3.2, :mod:`thinnest.bench.smart_turn`; measured
  here, not a provider): the audio up to that point and 0.2 s of silence (Pipecat asks it
  when its VAD has heard 0.2 s of silence), its last 8 s.

Reported per detector: the share of finished sentences it holds open (each waits the
maximum delay), the share of pauses it holds open (each saved from a cut-off), the
resulting mean wait after a finished sentence, and the mean time of one verdict (the model
alone: the transcript's STT is not counted).
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from livekit.agents import llm

from thinnest.bench.corpus import FULL_SET, SAMPLE_RATE, load_corpus, utterances
from thinnest.config import Settings
from thinnest.providers import registry

__all__ = ["TurnBenchOptions", "find_points", "run_turn_bench"]

_FRAME = SAMPLE_RATE // 100  # 10 ms
_QUIET_DB = 35.0  # a frame this far below the loudest is quiet
_MIN_GAP = 6  # frames: the shortest gap between words taken as a pause
_ASKED_AFTER = 0.2  # s of silence after which livekit-agents asks the audio model
_AUDIO_WINDOW = int(1.2 * SAMPLE_RATE)  # samples the audio model hears
_STT_BEFORE = 0.5  # s of silence before the speech (the STT's VAD pre-roll)
_STT_AFTER = 0.4  # s of silence after it (the STT's VAD end_silence)
SMART_TURN = "smart-turn"
_SMART_TURN_AFTER = 0.2  # s of silence after which Pipecat asks Smart Turn
_SMART_TURN_THRESHOLD = 0.5


@dataclass(frozen=True)
class TurnBenchOptions:
    """What the turn benchmark runs.

    Attributes:
        count: utterances of the speech corpus to take (its clean ones among them).
        detectors: turn detection providers to ask (``livekit``, ``transcript``), and
            ``smart-turn``.
        stt_model: the whisper model that writes the transcript.
        cache_dir: the speech corpus cache; default ``<data_dir>/bench/speech-corpus``.
    """

    count: int = FULL_SET
    detectors: tuple[str, ...] = ("livekit", "transcript", "smart-turn")
    stt_model: str = "tiny.en"
    cache_dir: Path | None = field(default=None)


def find_points(pcm: np.ndarray) -> tuple[int, int | None]:
    """The sample where an utterance's speech ends, and one pause inside it (or None).

    Args:
        pcm: 16 kHz int16 audio of one utterance.

    Returns:
        ``(end, pause)``: sample indices just after the last loud frame and just after the
        loud frame before the middle inner gap.
    """
    frames = pcm[: pcm.size // _FRAME * _FRAME].astype(np.float64).reshape(-1, _FRAME)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-3)
    loud = np.flatnonzero(level > level.max() - _QUIET_DB)
    end = int(loud[-1] + 1)
    gaps = [
        int(a + 1)
        for a, b in zip(loud, loud[1:], strict=False)
        if b - a > _MIN_GAP and 50 < a + 1 < end - 30
    ]
    pause = gaps[len(gaps) // 2] * _FRAME if gaps else None
    return end * _FRAME, pause


def _audio_model_verdict(model: Any, pcm: np.ndarray, point: int) -> float:
    silence = np.zeros(int(_ASKED_AFTER * SAMPLE_RATE), np.int16)
    heard = np.concatenate([pcm[:point], silence])[-_AUDIO_WINDOW:]
    return float(model.predict(np.ascontiguousarray(heard, dtype=np.int16)))


def _smart_turn_verdict(model: Any, pcm: np.ndarray, point: int) -> float:
    silence = np.zeros(int(_SMART_TURN_AFTER * SAMPLE_RATE), np.int16)
    return float(model.predict(np.concatenate([pcm[:point], silence])))


def _transcribe(whisper: Any, pcm: np.ndarray, point: int) -> str:
    audio = np.concatenate(
        [
            np.zeros(int(_STT_BEFORE * SAMPLE_RATE), np.float32),
            pcm[:point].astype(np.float32) / 32768,
            np.zeros(int(_STT_AFTER * SAMPLE_RATE), np.float32),
        ]
    )
    text, _confidence = whisper.transcribe(audio)
    return str(text)


async def _transcript_verdict(detector: Any, text: str) -> float:
    chat = llm.ChatContext.empty()
    chat.add_message(role="user", content=text)
    return float(await detector.predict_end_of_turn(chat))


def _summary(
    verdicts: list[dict[str, Any]], threshold: float, settings: Settings, seconds: float
) -> dict[str, Any]:
    held = {
        kind: [v["p"] < threshold for v in verdicts if v["point"] == kind]
        for kind in ("end", "pause")
    }
    share_end = float(np.mean(held["end"])) if held["end"] else float("nan")
    low, high = settings.endpointing_min_delay, settings.endpointing_max_delay
    return {
        "threshold": threshold,
        "ends": len(held["end"]),
        "ends_held": int(sum(held["end"])),
        "pauses": len(held["pause"]),
        "pauses_held": int(sum(held["pause"])),
        "wait_after_end_ms": 1000 * (low + share_end * (high - low)),
        "verdict_ms": 1000 * seconds / len(verdicts) if verdicts else float("nan"),
    }


async def run_turn_bench(
    options: TurnBenchOptions,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Ask each detector about the end and one pause of every clean corpus utterance."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    cache_dir = options.cache_dir or settings.data_dir / "bench" / "speech-corpus"
    for name in options.detectors:
        if name != SMART_TURN:
            registry.validate("turn_detection", name, {}, settings=settings)
    say("synthesising / loading the utterances")
    clean = [u for u in utterances(options.count) if u.snr_db is None]
    corpus = await load_corpus(clean, cache_dir, settings)
    whisper = registry.build("stt", "whisper", {"model": options.stt_model}, settings=settings)
    points = [(utt, pcm, *find_points(pcm)) for utt, pcm in corpus]
    texts: dict[tuple[int, str], str] = {}
    if "transcript" in options.detectors:
        say(f"transcribing {len(points)} ends and their pauses with whisper {options.stt_model}")
        for utt, pcm, end, pause in points:
            for kind, at in (("end", end), ("pause", pause)):
                if at is not None:
                    texts[utt.index, kind] = await asyncio.to_thread(_transcribe, whisper, pcm, at)
    results: dict[str, Any] = {}

    async def audio_verdicts(judge: Callable[[np.ndarray, int], float]) -> list[dict[str, Any]]:
        verdicts = []
        for utt, pcm, end, pause in points:
            for kind, at in (("end", end), ("pause", pause)):
                if at is not None:
                    p = await asyncio.to_thread(judge, pcm, at)
                    verdicts.append({"index": utt.index, "point": kind, "p": p})
        return verdicts

    for name in options.detectors:
        say(f"asking {name}")
        verdicts: list[dict[str, Any]] = []
        if name == SMART_TURN:
            from thinnest.bench.smart_turn import SmartTurn

            smart = SmartTurn()
            threshold: float = _SMART_TURN_THRESHOLD
            asked = time.perf_counter()
            verdicts = await audio_verdicts(functools.partial(_smart_turn_verdict, smart))
        elif name == "transcript":
            detector = registry.build("turn_detection", name, {}, settings=settings)
            threshold = float(await detector.unlikely_threshold(None))
            asked = time.perf_counter()
            for (index, kind), text in texts.items():
                p = await _transcript_verdict(detector, text)
                verdicts.append({"index": index, "point": kind, "p": p, "text": text})
        else:
            from livekit.local_inference import EOT

            detector = registry.build("turn_detection", name, {}, settings=settings)
            stream = detector.stream()
            threshold = float(await stream.unlikely_threshold(None))  # None: English
            await stream.aclose()
            model = EOT()
            asked = time.perf_counter()
            verdicts = await audio_verdicts(functools.partial(_audio_model_verdict, model))
        seconds = time.perf_counter() - asked
        summary = _summary(verdicts, threshold, settings, seconds)
        results[name] = {**summary, "verdicts": verdicts}
    await whisper.aclose()
    return {
        "benchmark": "turn",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "options": {**asdict(options), "cache_dir": str(cache_dir)},
        "endpointing_ms": {
            "min": 1000 * settings.endpointing_min_delay,
            "max": 1000 * settings.endpointing_max_delay,
        },
        "corpus": [{"index": u.index, "text": u.text, "voice": u.label} for u, *_ in points],
        "duration_s": time.perf_counter() - started,
        "detectors": results,
    }
