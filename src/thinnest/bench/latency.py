"""``thinnest bench latency``: voice-to-voice latency of real calls, with the engine's breakdown.

A fresh stack (:class:`~thinnest.bench.stack.BenchStack`: LiveKit server, API, our worker
and, with peers, a plain livekit-agents worker) takes calls from a scripted caller
(:class:`~thinnest.bench.probe.ProbeClient`) that says fixed, varied questions (the speech
benchmark's utterances, clean, synthesised once by espeak-ng and piper and cached) and
times each answer at the client: end of its speech → first loud frame of the agent's
audio. Each call waits for the greeting, then says ``turns_per_call`` utterances, one
after the agent has finished the previous answer.

Stacks (provider sets):

- ``offline``: the default agent: whisper, llama, hibari, silero, LiveKit's turn model.
- ``fixed``: the ``fixed`` providers (STT 100 ms after end of speech, LLM first token
  200 ms with the whole reply at once, TTS first audio 100 ms) with silero and VAD-only
  turn detection: the known floor is the VAD's silence window + those three, and **engine
  overhead = voice-to-voice − floor** (WebRTC both ways included).

Systems: ``thinnest`` (our engine, through ``/voice/start``); with ``peers``,
``livekit-agents`` (``AgentSession`` with default settings, same provider objects); and
``pipecat`` (a Pipecat pipeline with the same fixed delays, :mod:`thinnest.bench.pipecat_peer`;
``fixed`` stack only) when its virtualenv is installed or ``pipecat`` asks for it. Calls
of every (system, stack) pair are interleaved, so slow spells of this shared machine hit
them alike, and our p50/p95 are reported as ratios to each peer's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from thinnest.bench.corpus import SAMPLE_RATE, load_corpus, utterances
from thinnest.bench.metrics import percentile
from thinnest.bench.peer import AGENT_NAME as PEER_AGENT
from thinnest.bench.pipecat_peer import (
    SETUP_HINT,
    PipecatBot,
    bot_token,
    find_python,
    require_python,
)
from thinnest.bench.probe import ProbeClient, TurnResult, describe, to_48k
from thinnest.bench.stack import BenchStack, StackOptions
from thinnest.config import Settings
from thinnest.contracts.agent import DEFAULT_GREETING
from thinnest.errors import ConfigError

__all__ = ["FIXED_DELAYS", "STACKS", "LatencyOptions", "run_latency_bench", "summarise"]

#: Known delays of the fixed stack, ms: VAD silence window, STT, LLM first token, TTS first audio.
FIXED_DELAYS = {"vad_silence": 550, "stt": 100, "llm_ttft": 200, "tts_ttfb": 100}

STACKS: dict[str, dict[str, Any]] = {
    "offline": {},
    "fixed": {
        "stt": {"name": "fixed", "options": {"delay_ms": FIXED_DELAYS["stt"]}},
        "llm": {
            "name": "fixed",
            "options": {"ttft_ms": FIXED_DELAYS["llm_ttft"], "words_per_second": 0},
        },
        "tts": {"name": "fixed", "options": {"ttfb_ms": FIXED_DELAYS["tts_ttfb"]}},
        "vad": {
            "name": "silero",
            "options": {"min_silence_duration": FIXED_DELAYS["vad_silence"] / 1000},
        },
        "turn_detection": {"name": "livekit", "options": {"mode": "vad"}},
    },
}
GREETING = DEFAULT_GREETING
INSTRUCTIONS = "You are a helpful, concise voice assistant. Answer in one or two short sentences."


@dataclass(frozen=True)
class LatencyOptions:
    """What to run.

    Attributes:
        count: utterances per (system, stack).
        turns_per_call: utterances said in one call (then a new call starts).
        stacks: provider sets, keys of :data:`STACKS`.
        peers: also run the plain livekit-agents peer.
        pipecat: also run the Pipecat peer (``fixed`` stack): True requires it, None runs
            it when its virtualenv is installed, False never.
        pipecat_python: the Python of the Pipecat virtualenv (default ``.venv-pipecat``).
        quiet: seconds of agent silence that end its answer.
        answer_timeout: seconds to wait for an answer before counting the turn lost.
        models: the shared model services (``thinnest models``) serve the calls; off, each
            job process loads its own models.
        workdir: where the stack keeps its files (a fresh directory).
    """

    count: int = 20
    turns_per_call: int = 5
    stacks: tuple[str, ...] = ("offline", "fixed")
    peers: bool = True
    pipecat: bool | None = None
    pipecat_python: Path | None = None
    quiet: float = 1.5
    answer_timeout: float = 30.0
    models: bool = True
    workdir: Path | None = None


@dataclass
class ModeRun:
    system: str
    stack: str
    turns: list[TurnResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "max": max(values) if values else math.nan,
        "n": len(values),
    }


def summarise(run: ModeRun) -> dict[str, Any]:
    """Percentiles of voice-to-voice, medians of the engine's breakdown, continuity."""
    timed = [(t, t.v2v_ms) for t in run.turns if t.v2v_ms is not None]
    answered = [t for t, _ in timed]
    v2v = [ms for _, ms in timed]
    breakdown: dict[str, float] = {}
    for key in ("end_of_turn_delay", "stt", "llm_ttft", "tts_ttfb", "voice_to_voice"):
        values = [t.engine[key] for t in answered if key in t.engine]
        breakdown[key] = percentile(values, 50)
    rest = [
        ms - t.engine["end_of_turn_delay"] - t.engine["llm_ttft"] - t.engine["tts_ttfb"]
        for t, ms in timed
        if all(k in t.engine for k in ("end_of_turn_delay", "llm_ttft", "tts_ttfb"))
    ]
    breakdown["rest"] = percentile(rest, 50)
    transport = [ms - t.engine["voice_to_voice"] for t, ms in timed if "voice_to_voice" in t.engine]
    breakdown["transport"] = percentile(transport, 50)
    frames = sum(t.frames for t in answered)
    result: dict[str, Any] = {
        "system": run.system,
        "stack": run.stack,
        "turns": len(run.turns),
        "answered": len(answered),
        "v2v_ms": _stats(v2v),
        "breakdown_p50_ms": breakdown,
        "frames": frames,
        "late_frames": sum(t.late_frames for t in answered),
        "quiet_frames": sum(t.quiet_frames for t in answered),
        "errors": run.errors,
    }
    if run.stack == "fixed":
        floor = sum(FIXED_DELAYS.values())
        result["known_floor_ms"] = floor
        result["overhead_ms"] = _stats([v - floor for v in v2v])
    return result


#: RMS of a 10 ms frame below which a clip's tail counts as silence (int16 scale).
TAIL_SILENCE_RMS = 100.0


def trim_tail(pcm: np.ndarray, rate: int) -> np.ndarray:
    """``pcm`` without its trailing near-silence (10 ms frames under :data:`TAIL_SILENCE_RMS`).

    The synthesised clips end with 0.1-0.45 s of it (median 0.24 s): timed from the end of
    the file, every answer looked that much faster than from the end of the speech.
    """
    frame = rate // 100
    n = len(pcm) // frame
    rms = np.sqrt((pcm[: n * frame].astype(np.float64).reshape(n, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms >= TAIL_SILENCE_RMS)
    return pcm[: (int(loud[-1]) + 1) * frame] if loud.size else pcm


async def _audio(count: int, settings: Settings) -> list[tuple[str, np.ndarray]]:
    items = [dataclasses.replace(u, snr_db=None) for u in utterances(count)]
    corpus = await load_corpus(items, settings.data_dir / "bench" / "speech-corpus", settings)
    return [(u.text, to_48k(trim_tail(pcm, SAMPLE_RATE), SAMPLE_RATE)) for u, pcm in corpus]


async def run_call(
    client: ProbeClient,
    audio: list[tuple[int, str, np.ndarray]],
    *,
    tone: bool,
    options: LatencyOptions,
) -> list[TurnResult]:
    """Wait for the greeting, say each utterance, time each answer."""
    joined = time.monotonic()
    if await client.wait_answer(joined, within=180) is None:
        raise TimeoutError("no greeting within 180 s")
    await client.wait_quiet(options.quiet, within=60)
    results = []
    for index, text, pcm in audio:
        results.append(
            await client.turn(
                index, text, pcm, tone=tone, quiet=options.quiet, within=options.answer_timeout
            )
        )
    await asyncio.sleep(0.5)  # the last answer's metrics event
    for i, result in enumerate(results):
        end = results[i + 1].speech_end if i + 1 < len(results) else math.inf
        result.engine = client.engine_metrics(result.speech_end, end)
    return results


async def run_latency_bench(
    options: LatencyOptions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Start the stack, make the calls, return the results (see ``docs/benchmarks.md``)."""
    started = time.time()
    progress("synthesising / loading the utterances")
    audio = await _audio(options.count, settings)
    workdir = options.workdir or settings.data_dir / "bench" / f"stack-{int(started)}"
    systems = ["thinnest"] + (["livekit-agents"] if options.peers else [])
    skipped: dict[str, str] = {}
    pipecat_python = _pipecat_python(options, skipped)
    if pipecat_python is not None:
        systems.append("pipecat")
    runs = {
        (sy, st): ModeRun(sy, st)
        for st in options.stacks
        for sy in systems
        if sy != "pipecat" or st == "fixed"
    }
    stack_opts = StackOptions(
        workdir=workdir,
        peer_worker=options.peers,
        models=options.models and "offline" in options.stacks,
    )
    progress(f"starting LiveKit, API and workers in {workdir}")
    with BenchStack(stack_opts, settings) as stack:
        agents = {
            st: stack.create_agent(
                providers=STACKS[st], greeting=GREETING, instructions=INSTRUCTIONS
            )
            for st in options.stacks
        }
        async with httpx.AsyncClient(timeout=30) as http:
            for first in range(0, options.count, options.turns_per_call):
                chunk = [
                    (i, *audio[i])
                    for i in range(first, min(options.count, first + options.turns_per_call))
                ]
                for (system, stack_name), run in runs.items():
                    progress(f"{system}/{stack_name}: utterances {chunk[0][0]}-{chunk[-1][0]}")
                    bot: PipecatBot | None = None
                    try:
                        if system == "thinnest":
                            session = await stack.start_session(http, agents[stack_name])
                        elif system == "pipecat":
                            assert pipecat_python is not None
                            session = await stack.start_peer_session(None)
                            bot = PipecatBot(pipecat_python, workdir)
                            await bot.start(
                                url=stack.livekit_url,
                                token=bot_token(
                                    stack.lk_key, stack.lk_secret, session["session_id"], "agent"
                                ),
                                delays=FIXED_DELAYS,
                                greeting=GREETING,
                            )
                        else:
                            meta = json.dumps(
                                {
                                    "providers": STACKS[stack_name],
                                    "greeting": GREETING,
                                    "instructions": INSTRUCTIONS,
                                }
                            )
                            session = await stack.start_peer_session(PEER_AGENT, meta)
                        async with ProbeClient(session["livekit_url"], session["token"]) as client:
                            run.turns += await run_call(
                                client, chunk, tone=stack_name == "fixed", options=options
                            )
                    except Exception as exc:  # one failed call must not lose the run
                        run.errors.append(repr(exc))
                        progress(f"  call failed: {exc!r}")
                    finally:
                        if bot is not None and await bot.finish() != 0:
                            run.errors.append(f"the Pipecat bot failed: {bot.log_tail(800)}")
    summaries = [summarise(run) for run in runs.values()]
    return {
        "bench": "latency",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "options": {**dataclasses.asdict(options), "workdir": str(workdir)},
        "fixed_delays_ms": FIXED_DELAYS,
        "summaries": summaries,
        "skipped": skipped,
        "ratios": ratios(summaries),
        "turns": {
            f"{run.system}/{run.stack}": [describe(t) for t in run.turns] for run in runs.values()
        },
    }


def _pipecat_python(options: LatencyOptions, skipped: dict[str, str]) -> Path | None:
    """The Pipecat peer's Python when it runs; else why not, in ``skipped``."""
    if options.pipecat is False:
        return None
    if "fixed" not in options.stacks:
        if options.pipecat:
            raise ConfigError("the Pipecat peer runs only on the fixed stack: add --stack fixed")
        skipped["pipecat"] = "runs on the fixed stack only (it has no in-process llama.cpp LLM)"
        return None
    if options.pipecat:
        return require_python(options.pipecat_python)
    python = find_python(options.pipecat_python)
    if python is None:
        skipped["pipecat"] = f"not installed: {SETUP_HINT}"
    return python


def ratios(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our p50 and p95 over each peer's, per stack (< 1: we answer sooner)."""
    ours = {s["stack"]: s for s in summaries if s["system"] == "thinnest"}
    result = []
    for peer in summaries:
        mine = ours.get(peer["stack"])
        if peer["system"] == "thinnest" or mine is None:
            continue
        row = {"stack": peer["stack"], "peer": peer["system"]}
        for q in ("p50", "p95"):
            theirs = peer["v2v_ms"][q]
            row[q] = mine["v2v_ms"][q] / theirs if theirs and not math.isnan(theirs) else math.nan
        result.append(row)
    return result


def machine() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in load],
    }


def default_out(settings: Settings, name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "bench" / f"{name}-{stamp}.json"
