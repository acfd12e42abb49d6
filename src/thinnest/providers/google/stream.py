"""The watched Speech stream: a stalled stream is a timeout, a refusal keeps its status.

google-cloud-speech sets no deadline on ``StreamingRecognize`` (a stream lasts minutes),
so a server that stopped answering held the call's STT forever; and grpcio's asyncio
client may report a refusal the server sent as its own internal error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import numpy as np

__all__ = ["LOUD_RMS", "STALL_LOUD_SECONDS", "STATUS_GRACE", "WatchedClient"]

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


class WatchedClient:
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
