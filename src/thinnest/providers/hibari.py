"""Offline TTS ``hibari`` (the default): hibari-tts, an American English voice at 24 kHz.

hibari-tts (Apache-2.0) is Kokoro-82M's *af_heart* voice distilled into a 7.9 MB int8 ONNX
model, with its own phonemizer (misaki's lexicon and rules ported to plain Python, and a
small ONNX net for unknown words; no espeak-ng), all inside its wheel. Both ONNX files are
checked against the SHA-256 constants below and loaded from the checked bytes, once per
process. Synthesis runs in a thread and yields sentence by sentence: a short sentence takes
about 12 ms on one core, a long one about 70 ms, so the first sound comes after the first
sentence alone. The agent session also feeds this TTS one sentence at a time (livekit-agents'
``tts.StreamAdapter``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts
from pydantic import BaseModel, ConfigDict, Field

from livekit import rtc
from thinnest.config import Settings
from thinnest.errors import ConfigError, ProviderError
from thinnest.providers._extras import require
from thinnest.providers._threads import iterate_in_thread

__all__ = ["MODEL_FILES", "NATIVE_RATE", "VERSION", "HibariOptions", "HibariTTS", "build"]

#: The pinned hibari-tts release whose files the hashes below describe.
VERSION = "0.2.1"
#: The model's own output rate.
NATIVE_RATE = 24000
#: SHA-256 and size of the ONNX files loaded from the package's ``assets``: the voice
#: (heart, from Kokoro's af_heart) and the phonemizer's net for out-of-vocabulary words.
MODEL_FILES: dict[str, tuple[str, int]] = {
    "hibari.onnx": ("5f70741d4e900f4e85d0037498736cc1b3e1b9a63a13546a5da1e63abf4fccd8", 7936868),
    "oov.onnx": ("d3cfd8122c5f172a98c8de38268bf1213ee09f2c2ae4df6e055fc6532590fe76", 2975020),
}
_REINSTALL = f"pip install --force-reinstall hibari-tts=={VERSION} (or rerun `thinnest setup`)"
# A fixed gain: the voice's raw level is quiet (RMS 0.03-0.045, peaks 0.22-0.32 over the
# bench sentences); 2.0 puts it near piper's (RMS ~0.09) with the peaks well below 1.
_GAIN = 2.0
#: The voice begins every synthesis with about 280 ms of silence (Kokoro's, measured on
#: "Sure, I can help you with that."): a caller waited that long for each answer's first
#: word. Cut to this much before the first sound (its end keeps ~0.4 s, the pause between
#: sentences).
_LEAD_IN = 0.04  # seconds
_QUIET = 0.003  # amplitude (-50 dBFS) under which a sample counts as silence
# A word the lexicon lacks: synthesising it once loads the unknown-word net too.
_WARM_TEXT = "Warm up, Thinnestor."


class HibariOptions(BaseModel):
    """Options of the ``hibari`` TTS.

    Attributes:
        voice: the voice (only ``heart``, American English, ships inside the package; the
            others would be downloaded at run time, which an offline platform does not do).
        speed: speaking rate; 1.0 is the voice's own, 1.2 is 20 % faster.
        volume: output gain.
        threads: onnxruntime threads of the voice model; 0 means one per available core.
            One is enough (about 130x real time) and leaves the cores to the LLM.
        sample_rate: 24000 (the model's own) or 48000 (resampled, e.g. for a 48 kHz client).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voice: Literal["heart"] = "heart"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    volume: float = Field(1.0, gt=0.0, le=2.0)
    threads: int = Field(1, ge=0, le=16)
    sample_rate: Literal[24000, 48000] = 24000


def _checked(directory: Path, name: str) -> bytes:
    """The bytes of the package's ``name``, refused unless they match :data:`MODEL_FILES`."""
    sha256, size = MODEL_FILES[name]
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"hibari-tts lacks its model file {path} ({exc.strerror}); reinstall it: {_REINSTALL}",
            code="model_missing",
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != size or digest != sha256:
        raise ConfigError(
            f"hibari-tts's model file {path} is corrupt ({len(data)} bytes, SHA-256 {digest}; "
            f"expected {size} bytes, {sha256}); reinstall it: {_REINSTALL}",
            code="model_hash_mismatch",
        )
    return data


@functools.lru_cache(maxsize=4)
def _load(threads: int) -> Any:
    """hibari's synthesiser (a ``hibari.Hibari``), its sessions built from checked bytes."""
    hibari = require("hibari", extra="offline", provider="hibari")
    onnxruntime = require("onnxruntime", extra="offline", provider="hibari")
    if getattr(hibari, "__version__", None) != VERSION:
        raise ConfigError(
            f"the hibari TTS needs hibari-tts=={VERSION}, found "
            f"{getattr(hibari, '__version__', 'another')}: pip install 'thinnest[offline]'",
            code="model_missing",
        )
    from hibari.g2p import G2P
    from hibari.g2p.oov import OOV

    assets = Path(str(hibari.__file__)).parent / "assets"
    voice = _checked(assets, "hibari.onnx")
    unknown_words = _checked(assets, "oov.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    oov = OOV(
        str(assets / "oov.onnx"),  # its JSON beside it is read; the session is ours
        session=onnxruntime.InferenceSession(
            unknown_words, sess_options=options, providers=["CPUExecutionProvider"]
        ),
    )
    # hibari builds the voice's session from the checked bytes (onnxruntime takes bytes
    # as well as a path), with ``threads`` intra-op threads.
    engine = hibari.Hibari(
        voice="heart",
        model=voice,
        threads=threads or len(os.sched_getaffinity(0)),
        g2p=G2P(oov=oov),
    )
    engine(_WARM_TEXT, seed=0)  # the first runs of both sessions (~50 ms) happen here
    return engine


class HibariTTS(tts.TTS):
    """hibari as a livekit-agents ``tts.TTS`` (non-streaming; audio by sentence)."""

    def __init__(self, *, options: HibariOptions) -> None:
        """Load (or reuse) the voice; its model files are verified first.

        Raises:
            ConfigError: hibari-tts is missing, of another version, or its files are corrupt.
        """
        self._engine = _load(options.threads)
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=options.sample_rate,
            num_channels=1,
        )
        self._opts = options

    @property
    def model(self) -> str:
        return f"hibari-{self._opts.voice}"

    @property
    def provider(self) -> str:
        return "hibari"

    def synthesize_pcm(self, text: str) -> Iterator[bytes]:
        """16-bit mono PCM at :attr:`sample_rate`, one piece per sentence.

        Blocking. Sentences are phonemized and synthesised one after the other, so the first
        one's audio comes before the next is begun. A sentence over hibari's 400 phonemes is
        cut at its clauses.
        """
        engine = self._engine
        gain = _GAIN * self._opts.volume
        resampler = (
            rtc.AudioResampler(
                NATIVE_RATE, self._opts.sample_rate, quality=rtc.AudioResamplerQuality.MEDIUM
            )
            if self._opts.sample_rate != NATIVE_RATE
            else None
        )
        rng = np.random.default_rng()
        first = True
        for sentence in engine.split_sentences(text):
            for phonemes in engine.phonemize(sentence):
                audio = engine.from_ids(engine.ids(phonemes), self._opts.speed, rng) * gain
                if first:
                    audio = _without_lead_silence(audio)
                if audio.size == 0:
                    continue
                first = False
                pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
                if resampler is None:
                    yield pcm
                    continue
                frame = rtc.AudioFrame(pcm, NATIVE_RATE, 1, len(pcm) // 2)
                for out in resampler.push(frame):
                    yield bytes(out.data)
        if resampler is not None:
            for out in resampler.flush():
                yield bytes(out.data)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _HibariStream(tts=self, input_text=text, conn_options=conn_options)


class _HibariStream(tts.ChunkedStream):
    def __init__(self, *, tts: HibariTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._hibari = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=uuid.uuid4().hex,
            sample_rate=self._hibari.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        try:
            async for pcm in iterate_in_thread(
                lambda: self._hibari.synthesize_pcm(self.input_text)
            ):
                output_emitter.push(pcm)
        except Exception as exc:
            raise ProviderError(f"hibari failed: {exc}", retryable=False) from exc
        output_emitter.flush()


def _without_lead_silence(audio: np.ndarray) -> np.ndarray:
    """``audio`` (at the voice's native rate) from :data:`_LEAD_IN` before its first sound."""
    loud = np.flatnonzero(np.abs(audio) > _QUIET)
    if loud.size == 0:
        return audio[:0]
    return audio[max(0, int(loud[0]) - int(_LEAD_IN * NATIVE_RATE)) :]


def build(options: HibariOptions, settings: Settings) -> Any:
    """Factory of the ``hibari`` TTS."""
    return HibariTTS(options=options)
