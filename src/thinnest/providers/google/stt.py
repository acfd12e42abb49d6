"""The ``google`` STT: livekit-plugins-google's ``STT``, able to dial another endpoint."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from typing import Any

from thinnest.config import Settings
from thinnest.providers._extras import require
from thinnest.providers._keys import require_key
from thinnest.providers.google.options import GoogleSTTOptions
from thinnest.providers.google.stream import WatchedClient

__all__ = ["build_stt", "is_loopback"]


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
    - Each client is a :class:`.stream.WatchedClient`: google-cloud-speech sets no deadline on
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
            return WatchedClient(client, timeout=timeout, sample_rate=self._config.sample_rate)

        async def _thinnest_client(self, timeout: float) -> Any:  # noqa: ASYNC109
            if self._thinnest_endpoint is None:
                return await super()._create_client(timeout)
            # v1 and v2 clients take the same arguments (a union of the two classes does not)
            client_cls: Any = SpeechV2 if self._config.version == 2 else SpeechV1
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
