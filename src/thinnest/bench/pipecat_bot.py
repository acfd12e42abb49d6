# Imports come after two set-ups that must precede them (see the comments there):
# ruff: noqa: E402
"""The Pipecat peer of the latency benchmark: a Pipecat bot with fixed-latency fake services.

``thinnest bench latency --pipecat`` runs this script, once per call, with the Python of
the separate Pipecat virtualenv (``pipecat-ai`` with its ``livekit`` and ``silero``
extras; see :mod:`thinnest.bench.pipecat_peer`). It imports nothing of ``thinnest``: only the
standard library, numpy, pipecat and livekit. The bench creates the room, mints this bot
a token for it, starts the bot, and lets its scripted caller join; the bot speaks the
greeting when the caller arrives (or is found in the room), answers every turn, and
exits with code 0 when no other participant is left in the room, when it is itself
disconnected, on SIGTERM or SIGINT, or after ``--max-seconds`` (counted from the moment
the pipeline is built). It exits with code 1 when it never joined the room or the
pipeline failed (a processor that can no longer work cancels the pipeline at once:
``ProcessorUnusablePolicy.CANCEL``, the one non-default setting, which only matters on
failure).

The pipeline is Pipecat 1.14's usual cascade::

    LiveKitTransport.input() -> FixedSTT -> user aggregator (Silero VAD, turn strategies)
    -> FixedLLM -> FixedTTS -> LiveKitTransport.output() -> assistant aggregator

with fake services that mirror our ``fixed`` providers (``thinnest.providers.fixed``) and
the delays of ``FIXED_DELAYS`` in ``thinnest.bench.latency``:

- STT (a ``SegmentedSTTService``): when the VAD reports the end of speech it gets the
  utterance, waits ``--stt-delay-ms`` and returns ``--transcript`` as one final
  (``finalized``) ``TranscriptionFrame``.
- LLM (an ``LLMService``): on each ``LLMContextFrame`` it pushes
  ``LLMFullResponseStartFrame``, waits ``--llm-ttft-ms``, pushes the whole ``--reply`` as
  one ``LLMTextFrame`` (our fixed LLM with ``words_per_second=0``), then
  ``LLMFullResponseEndFrame``. An interruption cancels it as it does any Pipecat service.
- TTS (a ``TTSService``): for each text it is given it waits ``--tts-ttfb-ms``, then
  returns, all at once in 20 ms ``TTSAudioRawFrame`` chunks, a sine tone of
  ``--frequency`` Hz at a third of full scale with 5 ms ramps, ``--ms-per-char`` ms per
  character of the (stripped) text and at least 200 ms, as our fixed TTS does. The base
  class frames it with ``TTSStartedFrame`` / ``TTSStoppedFrame``.

Pipecat defaults in effect (a "default settings" peer, like the livekit-agents one):

- Transport: ``LiveKitParams`` defaults but audio in and out on; the pipeline's default
  rates (16 kHz in, 24 kHz out, the rate of our fixed TTS too); output written in 40 ms
  chunks (``audio_out_10ms_chunks=4``) to a LiveKit ``AudioSource`` with a 1 s queue.
- VAD: ``SileroVADAnalyzer`` in the user aggregator, ``VADParams`` defaults
  (confidence 0.7, start 0.2 s, min volume 0.6) except ``stop_secs = --vad-stop-ms``.
  Pipecat logs a warning once that this differs from its recommended 0.2 s.
- Turn start: the default strategies (VAD, then transcription), which interrupt the bot.
- Turn stop: **not** the 1.14 default. Pipecat 1.14's default stop strategy is
  ``TurnAnalyzerUserTurnStopStrategy`` with the Smart Turn v3 model; our ``fixed`` stack
  ends turns on the VAD alone, so this bot uses Pipecat's VAD-based
  ``SpeechTimeoutUserTurnStopStrategy`` with its defaults instead. That strategy ends
  the turn only when both (a) ``user_speech_timeout`` (default **0.6 s**, in case the
  user goes on) has run from the VAD's stop event, itself ``stop_secs`` after the last
  speech, and (b) a transcript is in (our STT's is finalized, which cuts the STT safety
  timeout short). So with the defaults the LLM starts ``vad_stop + max(0.6 s, stt)``
  after the end of speech: the STT delay is hidden, and 0.5 s more than our VAD-only
  turn detection waits. ``--user-speech-timeout-ms`` changes (a); left out, Pipecat's
  default applies.
- TTS text aggregation: the default ``TextAggregationMode.SENTENCE``. It holds a
  sentence until the first character of the next one (or the end of the response) to
  confirm the boundary; our LLM sends the whole reply followed at once by
  ``LLMFullResponseEndFrame``, which flushes it, so it adds no delay here (it would with
  a streaming LLM whose reply has several sentences: the first waits for the second's
  first token).
- The rest: ``PipelineWorker`` defaults (RTVI on, idle timeout 300 s, metrics off) and
  ``LLMUserAggregatorParams`` defaults (user turn stop timeout 5 s, a fallback only).

Logs go to stderr only: one line when the bot has joined the room, one when it exits;
Pipecat's own (loguru) logging is kept at WARNING and above.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory heads sys.path, and it holds thinnest's own
# modules (``speech.py``, ``probe.py``, …) that could shadow real packages.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import base64
import binascii
import json
import signal
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from loguru import logger

# Pipecat logs through loguru, at DEBUG by default, and its import logs a banner.
logger.remove()
logger.add(sys.stderr, level="WARNING")

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker, ProcessorUnusablePolicy
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transcriptions.language import Language
from pipecat.transports.livekit.transport import LiveKitParams, LiveKitTransport
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.utils.time import time_now_iso8601
from pipecat.workers.runner import WorkerRunner

CHUNK_MS = 20
MIN_TONE_S = 0.2
LEVEL = 0.33
RAMP_S = 0.005


def log(message: str) -> None:
    """One line on stderr."""
    print(f"pipecat-bot: {message}", file=sys.stderr, flush=True)


def tone(duration: float, frequency: float, rate: int) -> np.ndarray:
    """``duration`` s of a sine at a third of full scale, 5 ms linear fades, int16 mono."""
    n = int(duration * rate)
    wave = LEVEL * 32767 * np.sin(2 * np.pi * frequency * np.arange(n) / rate)
    fade = min(n // 2, int(rate * RAMP_S))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return wave.astype(np.int16)


class FixedSTT(SegmentedSTTService):
    """Answers every VAD segment with ``text``, ``delay`` s after the VAD's stop."""

    def __init__(self, *, text: str, delay: float, vad_stop: float) -> None:
        # The end of speech to the transcript: the VAD's silence window plus our delay.
        super().__init__(
            ttfs_p99_latency=vad_stop + delay,
            settings=STTSettings(model=None, language=Language.EN),
        )
        self._text = text
        self._delay = delay

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        await self.start_ttfb_metrics()
        await asyncio.sleep(self._delay)
        await self.stop_ttfb_metrics()
        yield TranscriptionFrame(self._text, self._user_id, time_now_iso8601())


class FixedLLM(LLMService):
    """Answers every context with ``reply``, whole, ``ttft`` s after it arrives."""

    def __init__(self, *, reply: str, ttft: float) -> None:
        settings = LLMSettings(
            model=None,
            system_instruction=None,
            temperature=None,
            max_tokens=None,
            top_p=None,
            top_k=None,
            frequency_penalty=None,
            presence_penalty=None,
            seed=None,
            filter_incomplete_user_turns=False,
            user_turn_completion_config=None,
        )
        super().__init__(settings=settings)
        self._reply = reply
        self._ttft = ttft

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        # Runs in the processor's frame task, which an interruption cancels.
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            await self.start_ttfb_metrics()
            await asyncio.sleep(self._ttft)
            await self.stop_ttfb_metrics()
            await self._push_llm_text(self._reply)
        finally:
            await self.push_frame(LLMFullResponseEndFrame())


class FixedTTS(TTSService):
    """Speaks a tone, its length proportional to the text, ``ttfb`` s after the text."""

    def __init__(self, *, ttfb: float, ms_per_char: float, frequency: float) -> None:
        # The base class opens each audio context with TTSStartedFrame and closes it with
        # TTSStoppedFrame, as it does for Pipecat's own HTTP / local TTS services.
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=None, language=Language.EN),
        )
        self._ttfb = ttfb
        self._ms_per_char = ms_per_char
        self._frequency = frequency

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        await asyncio.sleep(self._ttfb)
        await self.stop_ttfb_metrics()
        rate = self.sample_rate
        duration = max(MIN_TONE_S, len(text.strip()) * self._ms_per_char / 1000)
        pcm = tone(duration, self._frequency, rate)
        step = rate * CHUNK_MS // 1000
        for start in range(0, len(pcm), step):
            yield TTSAudioRawFrame(
                audio=pcm[start : start + step].tobytes(),
                sample_rate=rate,
                num_channels=1,
                context_id=context_id,
            )


class _State:
    """Whether the bot joined, why it stops (the first reason given), its first error."""

    def __init__(self) -> None:
        self.joined = False
        self.reason = ""
        self.error = ""


def room_of(token: str) -> str:
    """The room a LiveKit token admits to (its ``video.room`` grant), for Pipecat's logs."""
    try:
        payload = token.split(".")[1]
        claims: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return str(claims.get("video", {}).get("room") or "")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The Pipecat peer of thinnest bench latency.")
    p.add_argument("--url", required=True, help="LiveKit server URL (ws:// or http://)")
    p.add_argument("--token", required=True, help="the bot's participant token for the room")
    p.add_argument("--stt-delay-ms", type=int, default=100)
    p.add_argument("--llm-ttft-ms", type=int, default=200)
    p.add_argument("--tts-ttfb-ms", type=int, default=100)
    p.add_argument("--vad-stop-ms", type=int, default=550)
    p.add_argument("--transcript", default="What are your opening hours?")
    p.add_argument("--reply", default="We are open from nine to five today.")
    p.add_argument("--greeting", default="Hello! How can I help you today?", help="'': none")
    p.add_argument("--ms-per-char", type=float, default=60)
    p.add_argument("--frequency", type=float, default=440)
    p.add_argument("--max-seconds", type=float, default=600, help="hard stop")
    p.add_argument(
        "--user-speech-timeout-ms",
        type=int,
        default=None,
        help="the turn stop strategy's wait after the VAD stop (default: Pipecat's, 600)",
    )
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    room = room_of(args.token)
    transport = LiveKitTransport(
        args.url,
        args.token,
        room,
        params=LiveKitParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    vad_stop = args.vad_stop_ms / 1000
    stt = FixedSTT(text=args.transcript, delay=args.stt_delay_ms / 1000, vad_stop=vad_stop)
    llm = FixedLLM(reply=args.reply, ttft=args.llm_ttft_ms / 1000)
    tts = FixedTTS(
        ttfb=args.tts_ttfb_ms / 1000, ms_per_char=args.ms_per_char, frequency=args.frequency
    )
    stop = (
        SpeechTimeoutUserTurnStopStrategy()
        if args.user_speech_timeout_ms is None
        else SpeechTimeoutUserTurnStopStrategy(
            user_speech_timeout=args.user_speech_timeout_ms / 1000
        )
    )
    user, assistant = LLMContextAggregatorPair(
        LLMContext(),
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=vad_stop)),
            user_turn_strategies=UserTurnStrategies(stop=[stop]),
        ),
    )
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
    # Cancel at once when a processor can no longer work (the transport could not join,
    # say) rather than run on without it (Pipecat's default, CONTINUE, waits for the app).
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(),
        processor_unusable_policy=ProcessorUnusablePolicy.CANCEL,
    )
    state = _State()

    async def finish(reason: str) -> None:
        state.reason = state.reason or reason
        await worker.cancel(reason=reason)

    @worker.event_handler("on_pipeline_error")
    async def _error(_worker: PipelineWorker, frame: ErrorFrame) -> None:
        state.error = state.error or str(frame.error)

    @transport.event_handler("on_connected")
    async def _connected(_transport: LiveKitTransport) -> None:
        state.joined = True
        log(f"pipecat bot joined room {room!r} as {transport.participant_id!r}")

    @transport.event_handler("on_first_participant_joined")
    async def _first(_transport: LiveKitTransport, participant_id: str) -> None:
        if args.greeting:
            await worker.queue_frame(TTSSpeakFrame(args.greeting))

    @transport.event_handler("on_participant_disconnected")
    async def _left(_transport: LiveKitTransport, participant_id: str) -> None:
        if not transport.get_participants():
            await finish(f"{participant_id} left")

    @transport.event_handler("on_disconnected")
    async def _disconnected(_transport: LiveKitTransport) -> None:
        await finish("disconnected from the room")

    async def deadline() -> None:
        await asyncio.sleep(args.max_seconds)
        await finish(f"--max-seconds {args.max_seconds:g} reached")

    loop = asyncio.get_running_loop()
    runner = WorkerRunner()  # Pipecat's default: it cancels the pipeline on SIGINT
    pending: list[asyncio.Task[None]] = []
    loop.add_signal_handler(
        signal.SIGTERM, lambda: pending.append(loop.create_task(finish("SIGTERM")))
    )
    await runner.add_workers(worker)
    timer = loop.create_task(deadline())
    try:
        await runner.run()
    finally:
        timer.cancel()
    if not state.joined or (not state.reason and state.error):
        log(f"pipecat bot exiting: failed: {state.error or state.reason or 'never joined'}")
        return 1
    reason = state.reason or "the pipeline ended"
    log(f"pipecat bot exiting: {reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        log("pipecat bot exiting: interrupted")
        return 0


if __name__ == "__main__":
    sys.exit(main())
