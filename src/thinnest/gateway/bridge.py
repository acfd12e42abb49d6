"""The WebSocket gateway's I/O: one client WebSocket bridged into its session's LiveKit room.

The gateway joins the room as the user participant with the client's own token (the one
``POST /voice/start`` returned), publishes the client's PCM as the microphone, and sends the
agent's audio and data-channel events back. All decisions (auth, messages, limits, queues,
pacing) are :mod:`thinnest.gateway.protocol`'s; this module only moves bytes. It keeps no
state outside the connection, so any API process can serve any session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from livekit import rtc
from thinnest.contracts.events import TOPIC
from thinnest.gateway.protocol import (
    FRAME_MS,
    BadMessage,
    CloseCode,
    End,
    InboundGuard,
    Limits,
    Outbox,
    Pacer,
    Rechunker,
    Refusal,
    Start,
    error_event,
    frame_bytes,
    parse_text,
    ready_event,
)
from thinnest.log import logger

log = logger.getChild("gateway")

#: LiveKit's native rate: the client's audio is resampled to it before publishing.
LIVEKIT_RATE = 48000
#: Seconds to join the room before giving up (1011).
JOIN_TIMEOUT = 15.0
#: Client audio held before the first frame goes to LiveKit: a cushion against jitter (ms).
INPUT_CUSHION_MS = 100
#: Smallest kernel send buffer the gateway asks for (bytes).
SEND_BUFFER_MIN = 16384
#: Seconds each teardown step (leave the room, close a stream) may take.
TEARDOWN_STEP = 5.0
#: Seconds to flush queued audio and events to the client after ``call_ended``.
FLUSH_TIMEOUT = 3.0


class Bridge:
    """One connection: ``await Bridge(...).run(first)`` returns once the connection is over."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        session_id: str,
        token: str,
        livekit_url: str,
        sample_rate: int,
        limits: Limits,
        guard: InboundGuard,
    ) -> None:
        self.ws = websocket
        self.session_id = session_id
        self.token = token
        self.livekit_url = livekit_url
        self.rate = sample_rate
        self.limits = limits
        self.guard = guard
        self.room = rtc.Room()
        self.source = rtc.AudioSource(LIVEKIT_RATE, 1)
        self.resampler = (
            None
            if sample_rate == LIVEKIT_RATE
            else rtc.AudioResampler(
                sample_rate, LIVEKIT_RATE, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
            )
        )
        self.inbound = Rechunker(frame_bytes(sample_rate))
        self.outbox = Outbox(max_audio_frames=max(1, limits.audio_buffer_ms // FRAME_MS))
        self.pacer = Pacer()
        self._wake = asyncio.Event()
        #: set by the sender whenever it has sent everything queued
        self._sent_all = asyncio.Event()
        self._closing = asyncio.Event()
        self._close: Refusal | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[rtc.AudioStream] = []
        self.frames_in = 0
        self._cushion: list[rtc.AudioFrame] | None = []
        self._warned_slow = False
        self.frames_out = 0

    # --- lifecycle ------------------------------------------------------------------------

    def close(self, code: CloseCode, reason: str) -> None:
        """Ask the connection to end (the first reason wins)."""
        if self._close is None:
            self._close = Refusal(code, reason)
            self._closing.set()
            self._wake.set()

    async def run(self, first: bytes | None) -> Refusal:
        """Join, bridge until something ends the connection; return how it ends."""
        self.room.on("data_received", self._on_data)
        self.room.on("track_subscribed", self._on_track)
        self.room.on("disconnected", self._on_disconnected)
        try:
            try:
                await asyncio.wait_for(
                    self.room.connect(self.livekit_url, self.token), JOIN_TIMEOUT
                )
                track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
                options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
                await self.room.local_participant.publish_track(track, options)
            except Exception as exc:  # any failure to join: a timeout, LiveKit down, refused
                log.warning("session %s: gateway could not join: %s", self.session_id, exc)
                return Refusal(CloseCode.INTERNAL, "could not join the session's room")
            # About half a second of the client's audio in the kernel (it doubles the value).
            if not limit_send_buffer(max(SEND_BUFFER_MIN, self.rate // 2)):
                log.debug("session %s: the socket's send buffer is the kernel's", self.session_id)
            self.outbox.put_event(ready_event(self.session_id, self.rate))
            if first:
                await self._audio_in(first)
            self._spawn(self._receive())
            sender = asyncio.get_running_loop().create_task(self._send())
            await self._closing.wait()
            assert self._close is not None
            if self._close.code == CloseCode.NORMAL and self._close.reason == "call ended":
                # Let the closing words and the call_ended event reach the client.
                await self._cancel_tasks()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained(), FLUSH_TIMEOUT)
            sender.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(sender, return_exceptions=True), TEARDOWN_STEP
                )
            return self._close
        finally:
            await self._teardown()

    async def _drained(self) -> None:
        while len(self.outbox):
            self._sent_all.clear()
            await self._sent_all.wait()

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), TEARDOWN_STEP
            )

    async def _teardown(self) -> None:
        # Leave the room first (the engine hears the user hang up), then free the streams: an
        # AudioStream closes when LiveKit ends its track. Each step is bounded: a stuck one
        # must not keep the connection, or the call, alive.
        await self._cancel_tasks()
        steps = [self.room.disconnect()]
        steps += [stream.aclose() for stream in self._streams]
        steps.append(self.source.aclose())
        for step in steps:
            try:
                await asyncio.wait_for(step, TEARDOWN_STEP)
            except Exception as exc:  # noqa: BLE001 - teardown goes on whatever happens
                log.warning("session %s: gateway teardown step failed: %r", self.session_id, exc)
        log.info(
            "session %s: gateway closed (%s): %d frames in, %d out, %d dropped for a slow reader",
            self.session_id,
            self._close,
            self.frames_in,
            self.frames_out,
            self.outbox.dropped_frames,
        )

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    # --- client -> room -------------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancel that
                    # lands as its awaitable finishes, and the loop would go on after teardown.
                    async with asyncio.timeout(self.limits.idle_timeout):
                        message = await self.ws.receive()
                except TimeoutError:
                    self.close(CloseCode.IDLE, f"no message for {self.limits.idle_timeout:g} s")
                    return
                if message["type"] == "websocket.disconnect":
                    self.close(CloseCode.NORMAL, "client went away")
                    return
                data: bytes | None = message.get("bytes")
                text: str | None = message.get("text")
                self.guard.check(len(data) if data is not None else len((text or "").encode()))
                if data is not None:
                    await self._audio_in(data)
                elif text is not None:
                    self._text_in(text)
        except Refusal as refusal:
            self.close(refusal.code, refusal.reason)
        except (WebSocketDisconnect, RuntimeError):
            self.close(CloseCode.NORMAL, "client went away")
        except Exception:  # a dead receiver would leave the connection deaf: close it
            log.exception("session %s: gateway receive failed", self.session_id)
            self.close(CloseCode.INTERNAL, "gateway error")

    def _text_in(self, text: str) -> None:
        try:
            message = parse_text(text)
        except BadMessage as exc:
            self._event(error_event("bad_message", str(exc)))
            return
        except Refusal as exc:  # an invalid sample rate in a late start
            self._event(error_event("bad_message", exc.reason))
            return
        if isinstance(message, End):
            self.close(CloseCode.NORMAL, "hung up")
        elif isinstance(message, Start):
            self._event(error_event("bad_message", "start must be the first message"))

    async def _audio_in(self, data: bytes) -> None:
        for chunk in self.inbound.push(data):
            frame = rtc.AudioFrame(chunk, self.rate, 1, len(chunk) // 2)
            frames = self.resampler.push(frame) if self.resampler else [frame]
            self.frames_in += 1
            if self._cushion is not None:
                # The first INPUT_CUSHION_MS are held, then sent at once: LiveKit's source then
                # stays that far ahead of its playout and a late client frame (network or
                # scheduling jitter) does not leave a gap of silence in the user's words.
                self._cushion += frames
                if self.frames_in * FRAME_MS < INPUT_CUSHION_MS:
                    continue
                frames, self._cushion = self._cushion, None
            for out in frames:
                # Waits while LiveKit's 1 s queue is full: a client sending faster than real
                # time is slowed down (TCP back-pressure) instead of buffered without bound.
                await self.source.capture_frame(out)

    # --- room -> client -------------------------------------------------------------------

    def _event(self, text: str) -> None:
        try:
            self.outbox.put_event(text)
        except Refusal as refusal:
            self.close(refusal.code, refusal.reason)
        self._wake.set()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != TOPIC:
            return
        try:
            text = bytes(packet.data).decode()
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            return
        self._event(text)
        if kind == "call_ended":
            self.close(CloseCode.NORMAL, "call ended")

    def _on_track(
        self, track: rtc.Track, _pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            log.debug("session %s: agent audio from %s", self.session_id, who.identity)
            self._spawn(self._agent_audio(track))

    def _on_disconnected(self, reason: int) -> None:
        if reason == rtc.DisconnectReason.DUPLICATE_IDENTITY:
            self.close(CloseCode.REPLACED, "another connection joined as this participant")
        else:
            self.close(CloseCode.SESSION_ENDED, "the session's room closed")

    async def _agent_audio(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(
            track, sample_rate=self.rate, num_channels=1, frame_size_ms=FRAME_MS
        )
        self._streams.append(stream)
        chunker = Rechunker(frame_bytes(self.rate))
        async for event in stream:
            for chunk in chunker.push(bytes(event.frame.data)):
                self.outbox.put_audio(chunk)
            if self.outbox.dropped_frames and not self._warned_slow:
                self._warned_slow = True
                log.warning(
                    "session %s: the client reads slower than real time; dropping its oldest audio",
                    self.session_id,
                )
            self._wake.set()

    async def _send(self) -> None:
        try:
            while True:
                self._wake.clear()
                if self.outbox.events:
                    await self.ws.send_text(self.outbox.events.popleft())
                    continue
                if self.outbox.audio:
                    wait = self.pacer.delay(time.monotonic(), len(self.outbox.audio))
                    if wait > 0:
                        # An event arriving meanwhile goes out first. (Not wait_for: close()
                        # wakes this wait as the sender is cancelled, and 3.11's wait_for then
                        # drops the cancel: a client that hung up stayed connected.)
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(wait):
                                await self._wake.wait()
                        continue
                    await self.ws.send_bytes(self.outbox.audio.popleft())
                    self.pacer.sent()
                    self.frames_out += 1
                    continue
                self._sent_all.set()
                await self._wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.close(CloseCode.NORMAL, "client went away")


def limit_send_buffer(nbytes: int) -> bool:
    """Cap the send buffers of this connection's socket (best effort, uvicorn only).

    Linux grows a socket's send buffer up to ``net.ipv4.tcp_wmem`` (4 MiB by default, ~40 s
    of 48 kHz audio): a client that stops reading would sit that far behind before the
    gateway's own bounded queue (and its drop-oldest policy) noticed. ASGI does not expose the
    socket; under uvicorn the current task runs the connection protocol's ``run_asgi``, whose
    ``self`` holds the transport. Under another server this does nothing (memory then stays
    bounded by that server's and the kernel's buffers). Call it from the endpoint's task.
    """
    task = asyncio.current_task()
    frame = getattr(task.get_coro(), "cr_frame", None) if task is not None else None
    protocol = frame.f_locals.get("self") if frame is not None else None
    transport = getattr(protocol, "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    sock = get_extra_info("socket") if callable(get_extra_info) else None
    if sock is None or transport is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
        # uvicorn's send waits while asyncio's own buffer is over its high-water mark (64 KiB
        # by default, 2 s of 16 kHz audio): the same bound there.
        transport.set_write_buffer_limits(high=nbytes)
    except (OSError, AttributeError, ValueError):
        return False
    return True


async def close_websocket(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with ``code`` unless the client is already gone (bounded: a stuck client)."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), 5.0)


def pcm_level(data: bytes) -> float:
    """RMS of 16-bit PCM bytes (logging and tests)."""
    samples = np.frombuffer(data[: len(data) - len(data) % 2], dtype=np.int16)
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
