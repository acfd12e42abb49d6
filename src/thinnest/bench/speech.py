"""``thinnest bench speech``: WER and latency of the offline STT, TTS and LLM providers.

What is measured (see ``docs/benchmarks.md`` for the method and numbers):

- **STT** (whisper ``tiny.en`` and ``base``, streaming as the voice engine uses them): each
  cached utterance is pushed into :meth:`stt.STT.stream` after 0.3 s of silence; its last
  1.2 s and the silence after it go in real time (20 ms frames) until the final
  transcript arrives (at least 0.8 s of it, so that no segment of the utterance is lost). The
  latency is the time from the stream's ``END_OF_SPEECH`` event (its VAD's decision that
  the user stopped) to its ``FINAL_TRANSCRIPT``: what the agent waits for text beyond the
  VAD's own silence window. The time from the last speech sample to the final text
  (VAD window included) is kept in the JSON as ``after_audio_end_ms``. WER compares the
  final text with the utterance's text.
- **TTS** (hibari, piper, espeak): time from ``synthesize()`` to the first audio frame, and the
  real-time factor (synthesis time / audio duration), over the test sentences.
- **LLM** (llama): time to the first content token of a short answer, and tokens/s after it
  (``completion_tokens - 1`` over the time from the first to the last chunk).

Each provider is warmed up once (model load, prompt cache) before it is timed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from livekit.agents import llm, stt

from livekit import rtc
from thinnest.bench.corpus import (
    FULL_SET,
    SAMPLE_RATE,
    TEXTS,
    Utterance,
    load_corpus,
    utterances,
)
from thinnest.bench.metrics import (
    edit_distance,
    normalise,
    rate_interval,
    summary,
    word_error_rate,
)
from thinnest.config import Settings
from thinnest.contracts.agent import DEFAULT_GREETING
from thinnest.errors import ConfigError, ProviderError
from thinnest.providers import registry

__all__ = ["GOALS", "SpeechBenchOptions", "default_out", "run_speech_bench"]

#: The goals of issue 4: (section, metric, statistic, limit); a value passes when <= limit.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("stt", "wer", "corpus", 0.10),
    ("stt", "latency_ms", "p50", 150.0),
    ("tts", "first_audio_ms", "p50", 150.0),
    ("llm", "ttft_ms", "p50", 300.0),
)

_LLM_SYSTEM = "You are a friendly phone assistant. Answer in one or two short sentences."
_LLM_PROMPTS = (
    "What can you help me with?",
    "Can I book a table for two tomorrow at seven?",
    "What is the capital of France?",
    "Give me one tip for sleeping better.",
    "How do I reset my password?",
    "Tell me a short fact about the moon.",
    "Is it a good idea to carry an umbrella in London?",
    "Say goodbye politely.",
)
_FRAME = SAMPLE_RATE // 50  # 20 ms
_MAX_TAIL = 4.0  # seconds of trailing silence to wait for a final transcript
_MIN_TAIL = 0.8  # seconds of trailing silence always pushed: past the VAD's 0.55 s window
# The end of each utterance (where its pause and the VAD's decision fall) is pushed in real
# time, so a preflight transcription gets the head start it has in a call; what comes before
# is pushed at once, to keep the run short.
_PACED = 1.2


@dataclass(frozen=True)
class SpeechBenchOptions:
    """What the speech benchmark runs.

    Attributes:
        count: spoken utterances for the STT measures (the first ``count`` of the fixed set;
            by default all of it, each text in each voice).
        stt_models: whisper models to measure: ``tiny.en``, ``base``, or ``MODEL:full`` for
            the model with Whisper's full 30 s encoder window (the ``window`` option).
        stt_context: what the agent said before each utterance (the STT's ``context``): by
            default the default agent's greeting, as each utterance could answer it; ``""``
            for none.
        tts: TTS providers to measure.
        tts_sentences: sentences each TTS speaks.
        llm: LLM providers to measure.
        llm_prompts: prompts each LLM answers.
        llm_max_tokens: the longest answer.
        cache_dir: where the synthesised utterances are kept; default
            ``<data_dir>/bench/speech-corpus``.
    """

    count: int = FULL_SET
    stt_models: tuple[str, ...] = ("tiny.en", "base")
    stt_context: str = DEFAULT_GREETING
    tts: tuple[str, ...] = ("hibari", "piper", "espeak")
    tts_sentences: int = 12
    llm: tuple[str, ...] = ("llama",)
    llm_prompts: int = 8
    llm_max_tokens: int = 48
    cache_dir: Path | None = field(default=None)

    @classmethod
    def quick(cls, **overrides: Any) -> SpeechBenchOptions:
        """A small run for tests and smoke checks: 4 utterances, 2 sentences, 2 short answers."""
        base: dict[str, Any] = {
            "count": 4,
            "tts_sentences": 2,
            "llm_prompts": 2,
            "llm_max_tokens": 24,
        }
        return cls(**{**base, **overrides})


def default_out(settings: Settings) -> Path:
    """Where the JSON goes without ``--out``: ``<data_dir>/bench/speech-<UTC time>.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "bench" / f"speech-{stamp}.json"


def _frames(pcm: np.ndarray) -> list[rtc.AudioFrame]:
    return [
        rtc.AudioFrame(pcm[i : i + _FRAME].tobytes(), SAMPLE_RATE, 1, pcm[i : i + _FRAME].size)
        for i in range(0, pcm.size, _FRAME)
    ]


async def _stream_once(engine: stt.STT, pcm: np.ndarray) -> tuple[str, float | None, float | None]:
    """Final text, last END_OF_SPEECH -> its final (s) and end of the audio -> final (s).

    The VAD may cut an utterance at an inner pause into several segments: their finals are
    joined, and the latency is that of the last segment, the one the user ends with.
    """
    stream = engine.stream()
    ends: list[float] = []
    finals: list[float] = []
    texts: list[str] = []
    audio_end = 0.0

    async def feed() -> None:
        nonlocal audio_end
        frames = _frames(np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE), np.int16), pcm]))
        paced = int(_PACED * 50)
        for frame in frames[:-paced]:
            stream.push_frame(frame)
        for frame in frames[-paced:]:
            stream.push_frame(frame)
            await asyncio.sleep(0.02)
        audio_end = time.perf_counter()
        silence = _frames(np.zeros(_FRAME, dtype=np.int16))[0]
        while time.perf_counter() < audio_end + _MAX_TAIL:
            now = time.perf_counter()
            if now > audio_end + _MIN_TAIL and ends and len(finals) >= len(ends):
                break  # past the VAD's silence window, and every segment has its text
            stream.push_frame(silence)
            await asyncio.sleep(0.02)
        stream.end_input()

    feeder = asyncio.create_task(feed())
    try:
        async for event in stream:
            if event.type == stt.SpeechEventType.END_OF_SPEECH:
                ends.append(time.perf_counter())
            elif event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(time.perf_counter())
                texts.append(event.alternatives[0].text if event.alternatives else "")
    finally:
        await feeder
        await stream.aclose()
    text = " ".join(t.strip() for t in texts if t.strip())
    if not ends or len(finals) < len(ends):
        return text, None, None
    return text, max(0.0, finals[-1] - ends[-1]), finals[-1] - audio_end


async def _bench_stt(
    model: str, corpus: list[tuple[Utterance, np.ndarray]], context: str, settings: Settings
) -> dict[str, Any]:
    name, _, window = model.partition(":")
    engine = registry.build("stt", "whisper", _stt_options(model), settings=settings).for_call()
    engine.set_context(context)
    await _stream_once(engine, corpus[0][1])  # load the model, warm the caches
    items: list[dict[str, Any]] = []
    wers: list[float] = []
    latencies: list[float] = []
    after_end: list[float] = []
    errors: list[int] = []
    words: list[int] = []
    for utt, pcm in corpus:
        text, latency, tail = await _stream_once(engine, pcm)
        ref = normalise(utt.text)
        errors.append(edit_distance(ref, normalise(text)))
        words.append(len(ref))
        wers.append(word_error_rate(utt.text, text))
        if latency is not None and tail is not None:
            latencies.append(latency * 1000)
            after_end.append(tail * 1000)
        items.append(
            {
                "index": utt.index,
                "voice": utt.label,
                "reference": utt.text,
                "text": text,
                "wer": wers[-1],
                "latency_ms": None if latency is None else latency * 1000,
            }
        )
    await engine.aclose()
    return {
        "provider": f"whisper {name}"
        + (f" ({window} window)" if window else "")
        + ("" if context else " (no context)"),
        "context": context,
        "wer": {
            "corpus": sum(errors) / max(1, sum(words)),
            "corpus_ci95": list(rate_interval(errors, words)),
            **summary(wers),
        },
        "mean_wer_by_condition": {
            cond: sum(i["wer"] for i in sel) / len(sel)
            for cond, sel in (
                ("clean", [i for i, (u, _) in zip(items, corpus, strict=True) if u.snr_db is None]),
                ("noisy", [i for i, (u, _) in zip(items, corpus, strict=True) if u.snr_db]),
            )
            if sel
        },
        "latency_ms": summary(latencies),
        "after_audio_end_ms": summary(after_end),
        "missing_finals": len(corpus) - len(latencies),
        "items": items,
    }


async def _bench_tts(name: str, sentences: list[str], settings: Settings) -> dict[str, Any]:
    engine = registry.build("tts", name, {}, settings=settings)

    async def speak(text: str) -> tuple[float, float, float]:
        started = time.perf_counter()
        first: float | None = None
        samples = 0
        async with engine.synthesize(text) as stream:
            async for audio in stream:
                first = first if first is not None else time.perf_counter() - started
                samples += audio.frame.samples_per_channel
        if first is None or samples == 0:
            raise ProviderError(f"TTS {name!r} produced no audio for {text!r}", retryable=False)
        return first, time.perf_counter() - started, samples / engine.sample_rate

    await speak("Warming up.")
    first_audio, rtf = [], []
    for text in sentences:
        first, total, duration = await speak(text)
        first_audio.append(first * 1000)
        rtf.append(total / duration)
    await engine.aclose()
    return {"provider": name, "first_audio_ms": summary(first_audio), "rtf": summary(rtf)}


def _stt_options(model: str) -> dict[str, Any]:
    """Whisper's options for a ``MODEL[:WINDOW]`` of ``stt_models``."""
    name, _, window = model.partition(":")
    return {"model": name, "window": window} if window else {"model": name}


def _llm_options(max_tokens: int) -> dict[str, Any]:
    return {"temperature": 0.0, "max_tokens": max_tokens}


async def _bench_llm(name: str, prompts: list[str], max_tokens: int, settings: Settings) -> Any:
    model = registry.build("llm", name, _llm_options(max_tokens), settings=settings)

    async def ask(prompt: str) -> tuple[float, float]:
        ctx = llm.ChatContext()
        ctx.add_message(role="system", content=_LLM_SYSTEM)
        ctx.add_message(role="user", content=prompt)
        started = time.perf_counter()
        first: float | None = None
        usage: llm.CompletionUsage | None = None
        async with model.chat(chat_ctx=ctx) as stream:
            async for chunk in stream:
                if first is None and chunk.delta and chunk.delta.content:
                    first = time.perf_counter()
                usage = chunk.usage or usage
        ended = time.perf_counter()
        if first is None:
            raise ProviderError(f"LLM {name!r} answered nothing to {prompt!r}", retryable=False)
        tokens = usage.completion_tokens if usage is not None else 0
        rate = (tokens - 1) / (ended - first) if tokens > 1 and ended > first else float("nan")
        return first - started, rate

    await ask("Hello!")  # load the model, fill the prompt cache with the system prompt
    ttft, rates = [], []
    for prompt in prompts:
        first, rate = await ask(prompt)
        ttft.append(first * 1000)
        if rate == rate:  # not NaN
            rates.append(rate)
    await model.aclose()
    return {"provider": name, "ttft_ms": summary(ttft), "tokens_per_s": summary(rates)}


def _checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for section, metric, stat, limit in GOALS:
        for entry in results[section]:
            value = entry[metric][stat]
            checks.append(
                {
                    "provider": entry["provider"],
                    "metric": metric,
                    "statistic": stat,
                    "value": value,
                    "goal": limit,
                    "passed": bool(value <= limit),  # NaN fails
                }
            )
    return checks


async def run_speech_bench(
    options: SpeechBenchOptions, settings: Settings, *, progress: Any = None
) -> dict[str, Any]:
    """Run the speech benchmark and return its results (the JSON that ``--out`` writes).

    Args:
        options: what to run.
        settings: models directory and data directory.
        progress: optional ``callable(str)`` told what runs next.

    Returns:
        ``{"stt": [...], "tts": [...], "llm": [...], "checks": [...], ...}``, each entry with
        ``p50``/``p95``/``min``/``max``/``n`` summaries.

    Raises:
        ConfigError: a bad option or a provider that is not installed.
        ProviderError: a provider failed.
    """
    if options.count < 1:
        raise ConfigError("the speech benchmark needs at least one utterance", field="count")
    # every provider's options first: a typo must not wait for minutes of STT to surface
    for model in options.stt_models:
        registry.validate("stt", "whisper", _stt_options(model), settings=settings)
    for name in options.tts:
        registry.validate("tts", name, {}, settings=settings)
    for name in options.llm:
        registry.validate("llm", name, _llm_options(options.llm_max_tokens), settings=settings)
    say = progress or (lambda _msg: None)
    cache_dir = options.cache_dir or settings.data_dir / "bench" / "speech-corpus"
    started = time.perf_counter()
    say(f"synthesising or loading {options.count} utterances in {cache_dir}")
    corpus = await load_corpus(utterances(options.count), cache_dir, settings)
    results: dict[str, Any] = {"stt": [], "tts": [], "llm": []}
    for model in options.stt_models:
        say(f"STT whisper {model}")
        results["stt"].append(await _bench_stt(model, corpus, options.stt_context, settings))
    sentences = [TEXTS[i % len(TEXTS)] for i in range(options.tts_sentences)]
    for name in options.tts:
        say(f"TTS {name}")
        results["tts"].append(await _bench_tts(name, sentences, settings))
    prompts = [_LLM_PROMPTS[i % len(_LLM_PROMPTS)] for i in range(options.llm_prompts)]
    for name in options.llm:
        say(f"LLM {name}")
        results["llm"].append(await _bench_llm(name, prompts, options.llm_max_tokens, settings))
    opts = {**asdict(options), "cache_dir": str(cache_dir)}
    return {
        "benchmark": "speech",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "options": opts,
        "corpus": [{"index": u.index, "text": u.text, "voice": u.label} for u, _ in corpus],
        "duration_s": time.perf_counter() - started,
        **results,
        "checks": _checks(results),
    }
