"""The ``whisper`` STT as a client of the shared model service (``THINNEST_MODELS_URL``).

Everything but the decode stays in the call's process, as with :class:`WhisperSTT`: the
Silero VAD cuts utterances (cheap), :class:`WhisperStream` decodes ahead (preflight, interim
and final transcripts), and the call's context (the agent's last words) goes with each
request as its ``prompt``. The decode itself is one ``POST /v1/audio/transcriptions`` to the
service, which runs the same :meth:`WhisperSTT.transcribe` on the model it loaded once.
"""

from __future__ import annotations

import io
import json
import threading
import wave
from typing import Any

import httpx
import numpy as np
from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError

from thinnest.config import Settings
from thinnest.errors import ConfigError
from thinnest.providers._service import service_error, timeout, tls_context
from thinnest.providers.whisper.options import SAMPLE_RATE, WhisperOptions
from thinnest.providers.whisper.stt import BaseWhisperSTT

__all__ = ["RemoteWhisperSTT", "build_remote", "wav_bytes"]

# The options that shape a decode; the rest (VAD, interim, context) work in the call.
DECODE_OPTIONS = ("model", "beam_size", "window", "language", "threads")

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http() -> httpx.Client:
    """The process's one connection pool to the service (decodes run in worker threads)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                limits=httpx.Limits(max_keepalive_connections=8), verify=tls_context()
            )
        return _client


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Float samples in [-1, 1] as a 16-bit mono WAV file: exactly the 16-bit samples they
    were made of (:func:`to_mono_float32` divides by 32768), so the service decodes the same
    audio as a call's own Whisper would."""
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


class RemoteWhisperSTT(BaseWhisperSTT):
    """The ``whisper`` STT whose decodes run in the shared model service."""

    def __init__(self, *, options: WhisperOptions, settings: Settings) -> None:
        """Prepare the client (and the VAD of a streaming STT); loads no Whisper model.

        Args:
            options: validated options.
            settings: ``models_url`` (set) and ``provider_timeout``.
        """
        super().__init__(options=options)
        if not settings.models_url:
            raise ConfigError("a client of the model service needs THINNEST_MODELS_URL")
        self._url = settings.models_url.rstrip("/") + "/v1/audio/transcriptions"
        self._timeout = timeout(settings)
        self._decode_options = json.dumps(options.model_dump(include=set(DECODE_OPTIONS)))

    @property
    def provider(self) -> str:
        return "thinnest-models"

    def transcribe(
        self, audio: Any, language: str | None = None, *, final: bool = True
    ) -> tuple[str, float]:
        """Transcribe 16 kHz mono float32 samples in the service (blocking).

        Raises:
            APIConnectionError: the service cannot be reached.
            APITimeoutError: it did not answer within ``provider_timeout``.
            APIStatusError: it answered with an error.
        """
        language = language or self._opts.language
        files = {"file": ("audio.wav", wav_bytes(np.asarray(audio)), "audio/wav")}
        data = {
            "model": "whisper",
            "language": language,
            "prompt": self._hint(),
            "options": self._decode_options,
            "final": "true" if final else "false",
        }
        try:
            response = _http().post(self._url, data=data, files=files, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"whisper: the model service timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"whisper: the model service is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise service_error("whisper", response.status_code, response.content)
        try:
            answer = response.json()
            return str(answer["text"]), float(answer["confidence"])
        except (ValueError, KeyError, TypeError) as exc:
            raise APIStatusError(
                f"whisper: the model service answered {response.text[:200]!r}",
                status_code=502,
                retryable=False,
            ) from exc


def build_remote(options: WhisperOptions, settings: Settings) -> RemoteWhisperSTT:
    """Factory of the ``whisper`` STT with ``THINNEST_MODELS_URL`` set."""
    return RemoteWhisperSTT(options=options, settings=settings)
