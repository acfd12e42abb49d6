"""Fixed-latency providers ``fixed`` (STT, LLM, TTS): known delays, no model, for benchmarks.

They subclass the livekit-agents base classes and go through the same session code as the
real providers (the STT is non-streaming, so the session wraps it in livekit's
``StreamAdapter`` with the agent's VAD, as it does any batch STT; the TTS is non-streaming
and goes through livekit's sentence-splitting ``StreamAdapter``), so a call that uses them
costs the voice engine exactly what a call with cloud providers of those latencies would,
minus the network. ``thinnest bench latency --stack fixed`` subtracts the known delays
from the measured voice-to-voice time: what is left is the engine's own overhead.

- STT: after the VAD's end of speech, waits ``delay_ms`` and returns ``text``.
- LLM: waits ``ttft_ms``, then streams ``reply`` word by word at ``words_per_second``.
- TTS: waits ``ttfb_ms``, then emits a sine tone of ``ms_per_char`` per character of the
  text (at least 200 ms), all at once, as a fast streaming TTS would.

Not for real conversations: the names say so in listings (``description``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, stt, tts
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer
from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings

__all__ = [
    "FixedLLM",
    "FixedLLMOptions",
    "FixedSTT",
    "FixedSTTOptions",
    "FixedTTS",
    "FixedTTSOptions",
    "build_llm",
    "build_stt",
    "build_tts",
]

_RATE = 24000
_CHUNK_MS = 20


class FixedSTTOptions(BaseModel):
    """Options of the ``fixed`` STT.

    Attributes:
        text: the transcript of every utterance.
        delay_ms: time from the VAD's end of speech to the final transcript.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field("What are your opening hours today?", min_length=1, max_length=500)
    delay_ms: int = Field(100, ge=0, le=10000)
    language: str = Field("en", max_length=16)


class FixedLLMOptions(BaseModel):
    """Options of the ``fixed`` LLM.

    Attributes:
        reply: what every answer says.
        ttft_ms: time to the first token.
        words_per_second: pace of the following words (0: all at once).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: str = Field("We are open from nine to five today.", min_length=1, max_length=2000)
    ttft_ms: int = Field(200, ge=0, le=30000)
    words_per_second: float = Field(50.0, ge=0.0, le=10000.0)


class FixedTTSOptions(BaseModel):
    """Options of the ``fixed`` TTS.

    Attributes:
        ttfb_ms: time from the text to the first audio.
        ms_per_char: audio length per character of text.
        frequency: pitch of the tone, Hz.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttfb_ms: int = Field(100, ge=0, le=30000)
    ms_per_char: int = Field(50, ge=1, le=1000)
    frequency: float = Field(440.0, ge=50.0, le=4000.0)
    language: str = Field("en", max_length=16)


class FixedSTT(stt.STT):
    """A batch STT that answers ``text`` after ``delay_ms``."""

    def __init__(self, *, options: FixedSTTOptions) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._opts = options

    @property
    def model(self) -> str:
        return f"fixed-{self._opts.delay_ms}ms"

    @property
    def provider(self) -> str:
        return "thinnest-fixed"

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        await asyncio.sleep(self._opts.delay_ms / 1000)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[stt.SpeechData(language=self._opts.language, text=self._opts.text)],  # type: ignore[arg-type]
        )


class FixedLLM(llm.LLM):
    """An LLM that streams ``reply`` after ``ttft_ms``."""

    def __init__(self, *, options: FixedLLMOptions) -> None:
        super().__init__()
        self._opts = options

    @property
    def model(self) -> str:
        return f"fixed-{self._opts.ttft_ms}ms"

    @property
    def provider(self) -> str:
        return "thinnest-fixed"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _FixedLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class _FixedLLMStream(llm.LLMStream):
    def __init__(
        self,
        fixed: FixedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(fixed, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._opts = fixed._opts

    async def _run(self) -> None:
        opts = self._opts
        chunk_id = uuid.uuid4().hex
        await asyncio.sleep(opts.ttft_ms / 1000)
        words = opts.reply.split(" ")
        for i, word in enumerate(words):
            if i and opts.words_per_second:
                await asyncio.sleep(1 / opts.words_per_second)
            text = word if i == len(words) - 1 else word + " "
            delta = llm.ChoiceDelta(role="assistant", content=text)
            self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, delta=delta))
        usage = llm.CompletionUsage(
            completion_tokens=len(words), prompt_tokens=0, total_tokens=len(words)
        )
        self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, usage=usage))


class FixedTTS(tts.TTS):
    """A TTS that speaks a tone after ``ttfb_ms``, its length proportional to the text."""

    def __init__(self, *, options: FixedTTSOptions) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=_RATE, num_channels=1
        )
        self._opts = options

    @property
    def model(self) -> str:
        return f"fixed-{self._opts.ttfb_ms}ms"

    @property
    def provider(self) -> str:
        return "thinnest-fixed"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _FixedTTSStream(tts=self, input_text=text, conn_options=conn_options)


def tone(duration: float, frequency: float, rate: int = _RATE) -> np.ndarray:
    """A sine tone at a third of full scale with 5 ms ramps, int16."""
    t = np.arange(int(duration * rate)) / rate
    wave = np.sin(2 * np.pi * frequency * t) * 0.33 * 32767
    ramp = min(len(t) // 2, rate // 200)
    if ramp:
        envelope = np.linspace(0.0, 1.0, ramp)
        wave[:ramp] *= envelope
        wave[-ramp:] *= envelope[::-1]
    return wave.astype(np.int16)


class _FixedTTSStream(tts.ChunkedStream):
    def __init__(self, *, tts: FixedTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._opts = tts._opts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        opts = self._opts
        output_emitter.initialize(
            request_id=uuid.uuid4().hex, sample_rate=_RATE, num_channels=1, mime_type="audio/pcm"
        )
        await asyncio.sleep(opts.ttfb_ms / 1000)
        duration = max(0.2, len(self.input_text.strip()) * opts.ms_per_char / 1000)
        pcm = tone(duration, opts.frequency)
        step = _RATE * _CHUNK_MS // 1000
        for start in range(0, len(pcm), step):
            output_emitter.push(pcm[start : start + step].tobytes())
        output_emitter.flush()


def build_stt(options: FixedSTTOptions, settings: Settings) -> FixedSTT:
    """Factory of the ``fixed`` STT."""
    return FixedSTT(options=options)


def build_llm(options: FixedLLMOptions, settings: Settings) -> FixedLLM:
    """Factory of the ``fixed`` LLM."""
    return FixedLLM(options=options)


def build_tts(options: FixedTTSOptions, settings: Settings) -> FixedTTS:
    """Factory of the ``fixed`` TTS."""
    return FixedTTS(options=options)
