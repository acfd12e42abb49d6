"""Google providers: Cloud Speech STT ``google`` and Gemini LLM ``gemini`` (livekit-plugins-google).

Both authenticate with ``THINNEST_GOOGLE_API_KEY`` (for Cloud Speech through google-auth's
API-key credentials, so no service-account file is needed).

The plugin's STT always dials Google's own Speech host; a minimal subclass
(``_thinnest_stt``) replaces its client factory when ``GoogleSTTOptions.endpoint`` is set,
so that the gRPC client dials that endpoint instead, bounds each ``recognize`` attempt, and
watches each stream (:class:`_WatchedClient`): a server that answers nothing to seconds of
loud audio is a timeout, which livekit-agents answers with a new stream.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key

__all__ = [
    "V2_MODELS",
    "GeminiOptions",
    "GoogleSTTOptions",
    "build_llm",
    "build_stt",
    "check",
    "is_loopback",
]


V2_MODELS = ("telephony", "chirp_2", "chirp_3")
"""Models that the plugin serves through Speech v2 (its ``SpeechModelsV2``)."""

#: A stream that has sent this much loud audio (seconds) and heard nothing back for the
#: connection timeout is stalled. Google answers speech with interim results within a
#: second or so; during silence it says nothing, so silence alone never counts.
STALL_LOUD_SECONDS = 2.0
#: RMS (16-bit samples) from which a request's audio counts as loud: about -40 dBFS, well
#: under speech at a normal level and over the hiss of a quiet line.
LOUD_RMS = 330.0
_POLL = 0.25  # seconds between checks while a stream waits for a response
#: Seconds a stream whose write failed waits for the server's status (see _ServerStatusFirst).
STATUS_GRACE = 1.0


class GoogleSTTOptions(BaseModel):
    """Options of the ``google`` STT.

    Attributes:
        model: a Cloud Speech model (``latest_long``, ``chirp_2``, ...).
        languages: BCP-47 codes the speaker may use.
        location: the Cloud Speech region.
        project: the Google Cloud project id. Required by the Speech v2 models
            (``telephony``, ``chirp_2``, ``chirp_3``), whose requests name the recognizer
            ``projects/<project>/locations/<location>/recognizers/_``: an API key carries no
            project, so the plugin cannot find one by itself.
        endpoint: ``host:port`` of the Speech gRPC endpoint, default Google's (regional when
            ``location`` is not ``global``). Change it only for a proxy or a test server. It is
            reached over TLS with the API key, except on a loopback host (``127.0.0.1``,
            ``localhost``, ``::1``): there the connection is plain-text gRPC (still carrying the
            key), which gRPC's local credentials allow only to a loopback peer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("latest_long", min_length=1, max_length=64)
    languages: list[str] = Field(default_factory=lambda: ["en-US"], min_length=1, max_length=4)
    location: str = Field("global", pattern="^[a-z0-9-]+$")
    project: str | None = Field(None, pattern="^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
    endpoint: str | None = Field(
        None, pattern=r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}$", max_length=260
    )

    @model_validator(mode="after")
    def _v2_needs_project(self) -> GoogleSTTOptions:
        if self.model in V2_MODELS and self.project is None:
            raise ValueError(f"the Speech v2 model {self.model!r} needs 'project'")
        return self


class GeminiOptions(BaseModel):
    """Options of the ``gemini`` LLM.

    Attributes:
        model: a Gemini model name.
        temperature: sampling temperature.
        max_output_tokens: cap on the answer's length.
        base_url: the Gemini API endpoint; change it only for a proxy or gateway.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("gemini-2.5-flash", min_length=1, max_length=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(None, ge=1, le=65536)
    base_url: str | None = Field(None, pattern="^https?://")


def check(options: BaseModel, settings: Settings) -> None:
    """Refuse Google providers when ``THINNEST_GOOGLE_API_KEY`` is not set."""
    require_key(settings, "google_api_key", "google")


def build_stt(options: GoogleSTTOptions, settings: Settings) -> Any:
    """Factory of the ``google`` STT: a ``livekit.plugins.google.STT``."""
    google = require("livekit.plugins.google", extra="cloud", provider="google")
    api_key = require("google.auth.api_key", extra="cloud", provider="google")
    kwargs: dict[str, Any] = {}
    if options.project is not None:
        kwargs["project"] = options.project
    credentials = api_key.Credentials(require_key(settings, "google_api_key", "google"))
    return _thinnest_stt(google.STT)(
        endpoint=options.endpoint,
        model=options.model,
        languages=options.languages,
        location=options.location,
        credentials=credentials,
        **kwargs,
    )


def is_loopback(endpoint: str) -> bool:
    """Whether ``endpoint`` (``host:port``) is on this machine: ``localhost`` or a loopback IP."""
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _thinnest_stt(base: type) -> type:
    """The plugin's STT with three changes: a gRPC client that can dial ``endpoint``, watched
    streams, and a bound on each ``recognize`` attempt.

    - The plugin builds its ``SpeechAsyncClient`` in ``_create_client`` from the location
      alone and offers no endpoint or transport argument, so with ``endpoint`` set that one
      method is replaced.
    - Each client is a :class:`_WatchedClient`: google-cloud-speech sets no deadline on
      ``StreamingRecognize`` (a stream lasts minutes), so a server that stopped answering
      held the call's STT forever.
    - google-cloud-speech's default retry policy for v1 ``Recognize`` retries a
      ``DeadlineExceeded`` for up to 5000 s: the plugin's timeout bounded each try, not
      the call, and a silent server held the turn for over an hour. Each attempt is now
      bounded by ``conn_options.timeout`` as a whole (an ``APITimeoutError``, which
      livekit-agents retries ``max_retry`` times).

    Streaming, recognition and error mapping otherwise stay the plugin's.
    """
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.cloud.speech_v1 import SpeechAsyncClient as SpeechV1
    from google.cloud.speech_v2 import SpeechAsyncClient as SpeechV2
    from livekit.agents import APITimeoutError

    class ThinnestSTT(base):  # type: ignore[misc, valid-type]
        def __init__(self, *, endpoint: str | None, credentials: Any, **kwargs: Any) -> None:
            super().__init__(credentials=credentials, **kwargs)
            self._thinnest_endpoint = endpoint
            self._thinnest_credentials = credentials

        async def _recognize_impl(self, buffer: Any, *, conn_options: Any, **kwargs: Any) -> Any:
            try:
                async with asyncio.timeout(conn_options.timeout):
                    return await super()._recognize_impl(
                        buffer, conn_options=conn_options, **kwargs
                    )
            except TimeoutError:
                raise APITimeoutError() from None

        async def _create_client(self, timeout: float) -> Any:  # noqa: ASYNC109 (plugin's)
            client = await self._thinnest_client(timeout)
            return _WatchedClient(client, timeout=timeout, sample_rate=self._config.sample_rate)

        async def _thinnest_client(self, timeout: float) -> Any:  # noqa: ASYNC109
            if self._thinnest_endpoint is None:
                return await super()._create_client(timeout)
            client_cls = SpeechV2 if self._config.version == 2 else SpeechV1
            if not is_loopback(self._thinnest_endpoint):
                return client_cls(
                    credentials=self._thinnest_credentials,
                    client_options=ClientOptions(api_endpoint=self._thinnest_endpoint),
                )
            # Plain text, but still with the key as call metadata: local credentials refuse
            # any peer that is not a loopback address.
            transport = client_cls.get_transport_class("grpc_asyncio")(
                host=self._thinnest_endpoint,
                credentials=self._thinnest_credentials,
                ssl_channel_credentials=grpc.local_channel_credentials(
                    grpc.LocalConnectionType.LOCAL_TCP
                ),
            )
            return client_cls(transport=transport)

    ThinnestSTT.__name__ = ThinnestSTT.__qualname__ = f"Thinnest{base.__name__}"
    return ThinnestSTT


class _WatchedClient:
    """A Speech client whose streams end with ``DeadlineExceeded`` once stalled.

    Stalled: :data:`STALL_LOUD_SECONDS` of loud audio sent and no response for ``timeout``
    seconds (the connection timeout of the stream that made the client) since the first of
    it. The plugin turns ``DeadlineExceeded`` into ``APITimeoutError``; livekit-agents logs it
    and opens a new stream (an attempt that lasted longer than the timeout does not use up
    the retry budget, so a server that recovers is used again).
    """

    def __init__(self, client: Any, *, timeout: float, sample_rate: int) -> None:
        self._client = client
        self._timeout = timeout
        self._sample_rate = sample_rate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def streaming_recognize(self, *, requests: AsyncIterator[Any], **kwargs: Any) -> Any:
        watch = _StreamWatch(self._timeout, self._sample_rate)
        call = await self._client.streaming_recognize(requests=watch.sent(requests), **kwargs)
        _keep_server_status(call)
        return _WatchedCall(call, watch)


def _keep_server_status(call: Any) -> None:
    """Give a streaming call's grpcio core a :class:`_ServerStatusFirst` (where it has one:
    ``call`` is google-api-core's wrapper of a ``grpc.aio`` call)."""
    aio_call = getattr(call, "_call", None)
    core = getattr(aio_call, "_cython_call", None)
    if core is not None and not isinstance(core, _ServerStatusFirst):
        aio_call._cython_call = _ServerStatusFirst(core)  # type: ignore[union-attr]


class _ServerStatusFirst:
    """The core of a gRPC aio stream, keeping the status the server sent over grpcio's own.

    When a write fails because the server has just ended the stream (a refusal: bad key, no
    permission, unavailable), grpcio's asyncio client (1.85) marks the call INTERNAL
    "Internal error from Core", over the status the server sent if that came first
    (grpc/grpc issue 36066). The plugin then reports a retryable 500 instead of the refusal.
    A live audio stream is always writing when a refusal comes, so this happened to about
    half of them. Here grpcio's internal error only stands when the server's status does not
    come within :data:`STATUS_GRACE` seconds (a write refused for a local reason).
    """

    def __init__(self, core: Any) -> None:
        self._core = core
        self._internal: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def set_internal_error(self, message: str) -> None:
        if not self._core.done():  # done: the server's status is in, and it stays
            self._internal = message

    async def status(self) -> Any:
        if self._internal is not None and not self._core.done():
            try:
                async with asyncio.timeout(STATUS_GRACE):
                    await asyncio.shield(self._core.status())
            except TimeoutError:
                self._core.set_internal_error(self._internal)
        return await self._core.status()


class _StreamWatch:
    """What one stream sent (loud audio) and when it last heard from the server."""

    def __init__(self, timeout: float, sample_rate: int) -> None:
        self.timeout = timeout
        self._sample_rate = sample_rate
        self._loud = 0.0  # seconds of loud audio since the last response
        self._since: float | None = None  # when the first of it was sent

    async def sent(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            audio = getattr(request, "audio_content", b"") or getattr(request, "audio", b"")
            if audio:
                samples = np.frombuffer(audio[: len(audio) // 2 * 2], dtype=np.int16)
                if samples.size and np.sqrt(np.mean(samples.astype(np.float32) ** 2)) >= LOUD_RMS:
                    self._since = self._since or time.monotonic()
                    self._loud += samples.size / self._sample_rate
            yield request

    def heard(self) -> None:
        self._loud, self._since = 0.0, None

    def stalled(self) -> bool:
        return (
            self._since is not None
            and self._loud >= STALL_LOUD_SECONDS
            and time.monotonic() - self._since >= self.timeout
        )


class _WatchedCall:
    """The streaming call, iterated under a :class:`_StreamWatch`."""

    def __init__(self, call: Any, watch: _StreamWatch) -> None:
        self._call = call
        self._watch = watch

    def __getattr__(self, name: str) -> Any:  # cancel(), code(), ...
        return getattr(self._call, name)

    async def __aiter__(self) -> AsyncIterator[Any]:
        from google.api_core.exceptions import DeadlineExceeded

        responses: AsyncIterable[Any] = self._call
        iterator = aiter(responses)
        read: asyncio.Future[Any] | None = None
        try:
            while True:
                # one read at a time, never cancelled while waiting: cancelling a read of a
                # gRPC aio call would end the call
                read = read or asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({read}, timeout=_POLL)
                if not done:
                    if self._watch.stalled():
                        raise DeadlineExceeded(
                            f"Google Speech answered nothing for {self._watch.timeout:g} s "
                            f"of a stream with {STALL_LOUD_SECONDS:g} s of loud audio"
                        )
                    continue
                try:
                    response = read.result()
                except StopAsyncIteration:
                    return
                read = None
                self._watch.heard()
                yield response
        finally:
            if read is not None and not read.done():
                read.cancel()


def build_llm(options: GeminiOptions, settings: Settings) -> Any:
    """Factory of the ``gemini`` LLM: a ``livekit.plugins.google.LLM``."""
    google = require("livekit.plugins.google", extra="cloud", provider="gemini")
    kwargs: dict[str, Any] = {}
    if options.temperature is not None:
        kwargs["temperature"] = options.temperature
    if options.max_output_tokens is not None:
        kwargs["max_output_tokens"] = options.max_output_tokens
    if options.base_url is not None:
        genai_types = require("google.genai.types", extra="cloud", provider="gemini")
        kwargs["http_options"] = genai_types.HttpOptions(base_url=options.base_url)
    return google.LLM(
        model=options.model,
        api_key=require_key(settings, "google_api_key", "gemini"),
        vertexai=False,
        **kwargs,
    )
