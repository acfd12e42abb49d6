"""An offline TTS (``hibari``, ``piper``, ``espeak``) as a client of the shared model service.

With ``THINNEST_MODELS_URL`` set the registry builds :class:`RemoteTTS` instead of the
voice: a call's process loads no voice model. Each synthesis is one ``POST
/v1/audio/speech``; the service streams raw 16-bit mono PCM as its voice produces it (the
first clause or sentence first), and the body's chunks become frames as they arrive.

livekit-agents needs a TTS's sample rate when it is built, before any request, so it comes
from :data:`SAMPLE_RATES` (a fact of each voice) rather than from a request at build time,
which would make building a call's providers fail whenever the service is briefly away. The
service names the rate of each answer (``X-Sample-Rate``); an answer at another rate is
resampled, never played at the wrong speed.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import httpx
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    tts,
)
from pydantic import BaseModel

from livekit import rtc
from thinnest.config import Settings
from thinnest.errors import ConfigError
from thinnest.providers._service import service_error, timeout, tls_context

__all__ = ["SAMPLE_RATES", "RemoteTTS", "remote"]

#: The rate of each voice's audio (Hz) where its options do not set one (hibari's
#: ``sample_rate`` does): piper's joe medium and espeak-ng are 22.05 kHz, Kokoro 24 kHz.
SAMPLE_RATES: dict[str, int] = {"hibari": 24000, "piper": 22050, "espeak": 22050}

# One connection pool per event loop (an httpx.AsyncClient belongs to the loop it runs on).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _http() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(verify=tls_context())
    return client


class RemoteTTS(tts.TTS):
    """A TTS of the shared model service, as a livekit-agents ``tts.TTS`` (non-streaming
    input, streamed audio)."""

    def __init__(self, name: str, options: BaseModel, settings: Settings) -> None:
        """A client of the service's voice ``name`` with ``options`` (validated already).

        Args:
            name: the TTS provider's name in the service.
            options: its options.
            settings: ``models_url`` (set) and ``provider_timeout``.
        """
        if not settings.models_url:
            raise ConfigError("a client of the model service needs THINNEST_MODELS_URL")
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=_rate_of(name, options),
            num_channels=1,
        )
        self._name = name
        self._options = options.model_dump(mode="json")
        self._url = settings.models_url.rstrip("/") + "/v1/audio/speech"
        self._timeout = timeout(settings)

    @property
    def model(self) -> str:
        return self._name

    @property
    def provider(self) -> str:
        return "thinnest-models"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _RemoteStream(tts=self, input_text=text, conn_options=conn_options)


class _RemoteStream(tts.ChunkedStream):
    def __init__(self, *, tts: RemoteTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._remote = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        remote = self._remote
        rate = remote.sample_rate
        output_emitter.initialize(
            request_id=uuid.uuid4().hex, sample_rate=rate, num_channels=1, mime_type="audio/pcm"
        )
        body = {
            "model": remote._name,
            "input": self.input_text,
            "options": remote._options,
            "response_format": "pcm",
        }
        what = f"tts {remote._name}"
        try:
            request = _http().build_request("POST", remote._url, json=body, timeout=remote._timeout)
            response = await _http().send(request, stream=True)
            try:
                if response.status_code != 200:
                    raise service_error(what, response.status_code, await response.aread())
                convert = _converter(int(response.headers.get("x-sample-rate", rate)), rate)
                pending = b""
                async for chunk in response.aiter_bytes():
                    pending += chunk
                    whole = len(pending) - len(pending) % 2
                    if whole:
                        for pcm in convert(pending[:whole]):
                            output_emitter.push(pcm)
                        pending = pending[whole:]
                for pcm in convert(None):
                    output_emitter.push(pcm)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{what}: the model service timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"{what}: the model service is unreachable: {exc}") from exc
        except ValueError as exc:  # a bad X-Sample-Rate
            raise APIStatusError(f"{what}: {exc}", status_code=502, retryable=False) from exc
        output_emitter.flush()


def _rate_of(name: str, options: BaseModel) -> int:
    """The rate of the voice's audio: its ``sample_rate`` option (hibari's), else its own."""
    rate = getattr(options, "sample_rate", None)
    return rate if isinstance(rate, int) and rate > 0 else SAMPLE_RATES.get(name, 24000)


def _converter(source: int, target: int) -> Callable[[bytes | None], list[bytes]]:
    """PCM at ``source`` Hz to ``target`` Hz, chunk by chunk (``None``: the end)."""
    if source == target:
        return lambda pcm: [pcm] if pcm else []
    if source <= 0:
        raise ValueError(f"bad sample rate {source}")
    resampler = rtc.AudioResampler(source, target, num_channels=1)

    def convert(pcm: bytes | None) -> list[bytes]:
        if pcm is None:
            frames = resampler.flush()
        else:
            frames = resampler.push(rtc.AudioFrame(pcm, source, 1, len(pcm) // 2))
        return [bytes(frame.data) for frame in frames]

    return convert


def remote(name: str) -> Callable[[Any, Settings], RemoteTTS]:
    """The registry's ``remote`` factory of the TTS provider ``name``."""

    def build(options: Any, settings: Settings) -> RemoteTTS:
        return RemoteTTS(name, options, settings)

    return build
